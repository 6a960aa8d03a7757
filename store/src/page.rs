//! A page of a user's task list, built the same way by both stores: in index order,
//! skipping entries whose records expired (never counting them), bounded by count, bytes
//! and entries examined, and always saying whether more follow.

use inferpush_protocol::{TaskId, TaskRecord};

use crate::StoreError;

/// One page of a user's task list.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Page {
    /// The tasks, oldest first.
    pub tasks: Vec<TaskRecord>,
    /// True when more tasks may follow: list again from `cursor`.
    pub more: bool,
    /// The last task examined (returned or skipped as expired): where the next page starts.
    pub cursor: Option<TaskId>,
}

/// Most index entries one listing examines, expired ones included; past it the page ends
/// with `more`, so a backlog of expired entries never makes one call slow.
pub const MAX_EXAMINED_PER_PAGE: usize = 10_000;

/// Builds a page from index entries in order, each offered with its record's JSON while
/// that still exists: the one rule both stores apply.
pub(crate) struct PageBuilder<'a> {
    page: Page,
    bytes: usize,
    examined: usize,
    user_id: &'a str,
    limit: usize,
    max_bytes: usize,
}

impl<'a> PageBuilder<'a> {
    pub(crate) fn new(user_id: &'a str, limit: usize, max_bytes: usize) -> Self {
        Self { page: Page::default(), bytes: 0, examined: 0, user_id, limit, max_bytes }
    }

    /// Takes the entry `id`; false once the page is full (the entry is then not taken,
    /// and the page says more follow).
    pub(crate) fn offer(&mut self, id: TaskId, json: Option<&str>) -> Result<bool, StoreError> {
        let full = self.page.tasks.len() == self.limit
            || self.examined == MAX_EXAMINED_PER_PAGE
            || json.is_some_and(|j| !self.page.tasks.is_empty() && self.bytes + j.len() > self.max_bytes);
        if full {
            self.page.more = true;
            return Ok(false);
        }
        self.examined += 1;
        self.page.cursor = Some(id);
        if let Some(json) = json {
            let record: TaskRecord = serde_json::from_str(json)?;
            if record.user_id == self.user_id {
                self.bytes += json.len();
                self.page.tasks.push(record);
            }
        }
        Ok(true)
    }

    pub(crate) fn finish(self) -> Page {
        self.page
    }
}
