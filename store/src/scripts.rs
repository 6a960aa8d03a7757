//! The Lua scripts that change task state atomically. The rules they apply are not
//! written here: the tables of allowed moves and final states are generated from
//! [`TaskStatus`], so Redis enforces exactly the lifecycle the Rust code defines (and
//! `tests/task_store.rs` checks every pair against real Redis).

use inferpush_protocol::TaskStatus;
use redis::Script;

/// Creates a queued task unless the idempotency key already names one, or the user has
/// too many unfinished tasks. The key is a hash: the task it names, whether the api
/// confirmed the publish (`published`, 0 until then), and the fingerprint of the request
/// that took it (`request`).
///
/// The result quota counts each accepted task's estimated result bytes in the user's
/// current time bucket; the buckets of one result TTL together are what the user holds.
///
/// KEYS: task, user index, idempotency key (or the user's never-written stand-in),
///       user's in-flight counter, then the user's result-byte buckets of one TTL, the
///       current one first
/// ARGV: record JSON, task id, submitted ms, ttl seconds, oldest score to keep, in-flight
///       cap, request fingerprint, this task's result bytes, result quota (0: none),
///       bucket lifetime seconds, the task's in-flight slots, `1` when KEYS[3] is a key
/// Returns `TASK PUBLISHED REQUEST` when the key was taken, `limit` when the cap would be
/// passed, `quota HELD` when the quota would be passed, else `new IN_FLIGHT` (the slots of
/// the user's unfinished tasks, this one's included). A key written by an earlier version (a plain
/// string) counts as published, for the request that took it.
pub fn create() -> Script {
    Script::new(
        r#"
        local idem = ARGV[12] == '1'
        if idem then
            local kind = redis.call('TYPE', KEYS[3]).ok
            if kind == 'string' then return redis.call('GET', KEYS[3]) .. ' 1 ' .. ARGV[7] end
            if kind == 'hash' then
                local held = redis.call('HMGET', KEYS[3], 'task', 'published', 'request')
                return held[1] .. ' ' .. held[2] .. ' ' .. held[3]
            end
        end
        local slots = tonumber(ARGV[11])
        if tonumber(redis.call('GET', KEYS[4]) or '0') + slots > tonumber(ARGV[6]) then return 'limit' end
        local quota = tonumber(ARGV[9])
        if quota > 0 then
            local held = 0
            for i = 5, #KEYS do held = held + tonumber(redis.call('GET', KEYS[i]) or '0') end
            if held + tonumber(ARGV[8]) > quota then return 'quota ' .. held end
            redis.call('INCRBY', KEYS[5], ARGV[8])
            redis.call('EXPIRE', KEYS[5], ARGV[10])
        end
        if idem then
            redis.call('HSET', KEYS[3], 'task', ARGV[2], 'published', '0', 'request', ARGV[7])
            redis.call('EXPIRE', KEYS[3], ARGV[4])
        end
        local in_flight = redis.call('INCRBY', KEYS[4], slots)
        redis.call('EXPIRE', KEYS[4], ARGV[4])
        redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
        redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
        redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
        redis.call('EXPIRE', KEYS[2], ARGV[4])
        return 'new ' .. in_flight
        "#,
    )
}

/// Undoes `create` after the broker refused the task; only a task still queued goes, and
/// its idempotency key only while it names that task, unpublished.
///
/// KEYS: task, user index, idempotency key (or the user's stand-in), user's in-flight counter
/// ARGV: task id, `1` when KEYS[3] is a key
pub fn remove() -> Script {
    Script::new(&format!(
        r#"
        local record = redis.call('GET', KEYS[1])
        if record and cjson.decode(record).status ~= '{queued}' then return 0 end
        local held = tonumber(redis.call('GET', KEYS[4]) or '0')
        if record and held > 0 then
            redis.call('DECRBY', KEYS[4], math.min(held, tonumber(cjson.decode(record).slots or 1)))
        end
        redis.call('DEL', KEYS[1])
        redis.call('ZREM', KEYS[2], ARGV[1])
        if ARGV[2] == '1' and redis.call('TYPE', KEYS[3]).ok == 'hash'
            and redis.call('HGET', KEYS[3], 'task') == ARGV[1]
            and redis.call('HGET', KEYS[3], 'published') == '0' then
            redis.call('DEL', KEYS[3])
        end
        return 1
        "#,
        queued = TaskStatus::Queued.as_str()
    ))
}

/// Marks an idempotency key's task as published, if the key still names it.
///
/// KEYS: idempotency key
/// ARGV: task id
pub fn confirm_published() -> Script {
    Script::new(
        r#"
        if redis.call('TYPE', KEYS[1]).ok == 'hash' and redis.call('HGET', KEYS[1], 'task') == ARGV[1] then
            redis.call('HSET', KEYS[1], 'published', '1')
        end
        return 1
        "#,
    )
}

/// Moves a task to a new state if the lifecycle allows. Returns `applied`, or when
/// refused the current record JSON (so the caller can act on what is really there), or
/// `missing`. A task leaving an unfinished state for a final one frees its user's in-flight
/// slots it took; a task written with no record before joins its user's index.
///
/// With ARGV[6] = `1`, a record already in the new state is kept rather than written again
/// (a worker's first claim of a task another worker runs); with `2`, likewise unless it is
/// this very record: the same claim tried again after its answer was lost (Redis went
/// away mid-reply), which must not make its worker think another one runs the task.
///
/// KEYS: task, user index, user's in-flight counter
/// ARGV: new record JSON, new status, ttl seconds, task id, submitted ms, claim mode (0/1/2)
pub fn transition() -> Script {
    Script::new(&format!(
        r#"
        local allowed = {allowed}
        local final = {finals}
        local current = redis.call('GET', KEYS[1])
        local status = current and cjson.decode(current).status or ''
        local new = ARGV[2]
        if not (allowed[new] and allowed[new][status]) then return current or 'missing' end
        if ARGV[6] ~= '0' and status == new and not (ARGV[6] == '2' and current == ARGV[1]) then
            return current
        end
        redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
        local held = tonumber(redis.call('GET', KEYS[3]) or '0')
        if final[new] and status ~= '' and not final[status] and held > 0 then
            redis.call('DECRBY', KEYS[3], math.min(held, tonumber(cjson.decode(ARGV[1]).slots or 1)))
        end
        if status == '' then
            redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
            redis.call('EXPIRE', KEYS[2], ARGV[3])
        end
        return 'applied'
        "#,
        allowed = allowed_table(),
        finals = lua_set(TaskStatus::ALL.into_iter().filter(|s| s.is_final()).map(TaskStatus::as_str)),
    ))
}

/// `{running = {[''] = true, queued = true, …}, …}`: for each state, the stored states
/// (`''` for no record) it may follow.
fn allowed_table() -> String {
    let rows: Vec<String> = TaskStatus::ALL
        .into_iter()
        .map(|to| {
            let from =
                [None].into_iter().chain(TaskStatus::ALL.map(Some)).filter(|from| to.may_follow(*from));
            format!("{} = {}", to.as_str(), lua_set(from.map(|s| s.map_or("", TaskStatus::as_str))))
        })
        .collect();
    format!("{{{}}}", rows.join(", "))
}

/// A Lua table with `names` as its true-valued keys.
fn lua_set<'a>(names: impl Iterator<Item = &'a str>) -> String {
    let entries: Vec<String> = names.map(|name| format!("['{name}'] = true")).collect();
    format!("{{{}}}", entries.join(", "))
}

/// Leases the unsettled publishes noted at or before a time to one sweeper: each is noted
/// again now, and answered with what it needs; one whose details are gone is dropped.
///
/// KEYS: the publishing set, its details hash
/// ARGV: oldest score to take, now, most to take
/// Returns `[id, pending, id, pending, …]`.
pub fn take_unsettled() -> Script {
    Script::new(
        r#"
        local ids = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', ARGV[1], 'LIMIT', 0, ARGV[3])
        local taken = {}
        for _, id in ipairs(ids) do
            local pending = redis.call('HGET', KEYS[2], id)
            if pending then
                redis.call('ZADD', KEYS[1], ARGV[2], id)
                table.insert(taken, id)
                table.insert(taken, pending)
            else
                redis.call('ZREM', KEYS[1], id)
            end
        end
        return taken
        "#,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_generated_rules_read_as_the_lifecycle_says() {
        let table = allowed_table();
        assert!(table.contains("cancelled = {['queued'] = true, ['running'] = true}"), "{table}");
        assert!(table.contains("running = {[''] = true, ['queued'] = true, ['running'] = true}"), "{table}");
        assert!(table.contains("queued = {[''] = true}"), "{table}");
    }
}
