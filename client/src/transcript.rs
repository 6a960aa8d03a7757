//! One generation's text as a client builds it from what reaches it: the status API's
//! [`TaskProgress`] (the text of deltas 1 to `seq` of one attempt) and
//! [`DeltaEvent`]s. A delta is applied only when it is the next one of the attempt shown;
//! a later attempt (the task was redelivered after its worker died) starts the text again,
//! so text from two attempts is never mixed. The demo page's `transcript.js` is the same
//! rule in JavaScript.

use inferpush_protocol::{DeltaEvent, TaskProgress};

/// What a delta did to the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Applied {
    /// It was the next piece: the text grew.
    Appended,
    /// It was the first piece of a later attempt: the text started again.
    Restarted,
    /// One or more deltas before it were missed: read the progress again.
    Gap,
    /// Already shown, or of an earlier attempt.
    Ignored,
}

/// The text so far, with the attempt and the last delta it includes.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Transcript {
    /// The attempt the text is of (0: none yet).
    pub attempt: u64,
    /// The last delta applied.
    pub seq: u64,
    /// The text.
    pub text: String,
}

impl Transcript {
    /// Takes the status API's progress when it is ahead of the text: true when it was.
    pub fn apply_progress(&mut self, progress: &TaskProgress) -> bool {
        if (progress.attempt, progress.seq) <= (self.attempt, self.seq) {
            return false;
        }
        self.attempt = progress.attempt;
        self.seq = progress.seq;
        self.text.clone_from(&progress.text);
        true
    }

    /// Applies one delta event.
    pub fn apply_delta(&mut self, delta: &DeltaEvent) -> Applied {
        if delta.attempt < self.attempt {
            return Applied::Ignored;
        }
        if delta.attempt > self.attempt {
            if delta.seq != 1 {
                return Applied::Gap;
            }
            *self = Self { attempt: delta.attempt, seq: 1, text: delta.delta.clone() };
            return Applied::Restarted;
        }
        if delta.seq <= self.seq {
            return Applied::Ignored;
        }
        if delta.seq != self.seq + 1 {
            return Applied::Gap;
        }
        self.seq = delta.seq;
        self.text.push_str(&delta.delta);
        Applied::Appended
    }
}

#[cfg(test)]
mod tests {
    use inferpush_protocol::TaskId;

    use super::*;

    fn delta(attempt: u64, seq: u64, text: &str) -> DeltaEvent {
        DeltaEvent {
            task_id: TaskId::new_v7(),
            attempt,
            seq,
            delta: text.into(),
            tokens: seq as usize,
            generated_at_ms: 0,
        }
    }

    #[test]
    fn deltas_in_order_add_up_and_repeats_change_nothing() {
        let mut transcript = Transcript::default();
        assert_eq!(transcript.apply_delta(&delta(7, 1, "Hel")), Applied::Restarted);
        assert_eq!(transcript.apply_delta(&delta(7, 2, "lo")), Applied::Appended);
        assert_eq!(transcript.apply_delta(&delta(7, 2, "lo")), Applied::Ignored);
        assert_eq!(transcript.apply_delta(&delta(7, 1, "Hel")), Applied::Ignored);
        assert_eq!(transcript.text, "Hello");
    }

    #[test]
    fn a_missed_delta_is_a_gap_that_the_progress_fills() {
        let mut transcript = Transcript::default();
        transcript.apply_delta(&delta(7, 1, "a"));
        assert_eq!(transcript.apply_delta(&delta(7, 3, "c")), Applied::Gap);
        assert_eq!(transcript.text, "a");
        let progress = TaskProgress { attempt: 7, seq: 3, text: "abc".into(), tokens: 3 };
        assert!(transcript.apply_progress(&progress));
        assert!(!transcript.apply_progress(&TaskProgress { seq: 2, text: "ab".into(), ..progress }));
        assert_eq!(transcript.apply_delta(&delta(7, 4, "d")), Applied::Appended);
        assert_eq!(transcript.text, "abcd");
    }

    #[test]
    fn a_later_attempt_starts_again_and_an_earlier_ones_deltas_are_dropped() {
        let mut transcript = Transcript::default();
        transcript.apply_delta(&delta(7, 1, "first try"));
        assert_eq!(transcript.apply_delta(&delta(9, 2, " more")), Applied::Gap);
        assert_eq!(transcript.apply_delta(&delta(9, 1, "second")), Applied::Restarted);
        assert_eq!(transcript.apply_delta(&delta(7, 2, " of the first")), Applied::Ignored);
        assert_eq!(transcript.text, "second");
    }
}
