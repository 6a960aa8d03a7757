//! The Lua scripts that change task state atomically.

use redis::Script;

/// Creates a queued task unless the idempotency key already names one, or the user has
/// too many unfinished tasks.
///
/// KEYS: task, user index, idempotency key (or ""), user's in-flight counter
/// ARGV: record JSON, task id, submitted ms, ttl seconds, oldest score to keep, in-flight cap
/// Returns the existing task id when the idempotency key was taken, `limit` when the cap
/// is reached, else nil.
pub fn create() -> Script {
    Script::new(
        r#"
        if KEYS[3] ~= '' then
            local existing = redis.call('GET', KEYS[3])
            if existing then return existing end
        end
        if tonumber(redis.call('GET', KEYS[4]) or '0') >= tonumber(ARGV[6]) then return 'limit' end
        if KEYS[3] ~= '' then redis.call('SET', KEYS[3], ARGV[2], 'EX', ARGV[4]) end
        redis.call('INCR', KEYS[4])
        redis.call('EXPIRE', KEYS[4], ARGV[4])
        redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
        redis.call('ZADD', KEYS[2], ARGV[3], ARGV[2])
        redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', '(' .. ARGV[5])
        redis.call('EXPIRE', KEYS[2], ARGV[4])
        return false
        "#,
    )
}

/// Undoes `create` after the broker refused the task: nothing half-written remains.
///
/// KEYS: task, user index, idempotency key (or ""), user's in-flight counter
/// ARGV: task id
pub fn remove() -> Script {
    Script::new(
        r#"
        local record = redis.call('GET', KEYS[1])
        if record and cjson.decode(record).status ~= 'queued' then return 0 end
        if record and tonumber(redis.call('GET', KEYS[4]) or '0') > 0 then redis.call('DECR', KEYS[4]) end
        redis.call('DEL', KEYS[1])
        redis.call('ZREM', KEYS[2], ARGV[1])
        if KEYS[3] ~= '' and redis.call('GET', KEYS[3]) == ARGV[1] then redis.call('DEL', KEYS[3]) end
        return 1
        "#,
    )
}

/// Moves a task to a new state if the rules allow. Returns `applied`, or when refused the
/// current record JSON (so the caller can act on what is really there), or `missing`.
///
/// Rules: `running` from nothing, queued or running (a redelivery); a final state from
/// anything not yet final; `cancelled` only from queued.
///
/// A task leaving queued/running for a final state frees one of its user's in-flight slots.
///
/// KEYS: task, user index, user's in-flight counter
/// ARGV: new record JSON, new status, ttl seconds, task id, submitted ms
pub fn transition() -> Script {
    Script::new(
        r#"
        local current = redis.call('GET', KEYS[1])
        local status = current and cjson.decode(current).status or nil
        local new = ARGV[2]
        local final = {succeeded = true, failed = true, cancelled = true}
        local allowed
        if new == 'cancelled' then
            allowed = status == 'queued'
        elseif new == 'running' then
            allowed = status == nil or status == 'queued' or status == 'running'
        else
            allowed = status == nil or not final[status]
        end
        if not allowed then return current or 'missing' end
        redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[3])
        if final[new] and (status == 'queued' or status == 'running')
            and tonumber(redis.call('GET', KEYS[3]) or '0') > 0 then
            redis.call('DECR', KEYS[3])
        end
        if status == nil then
            redis.call('ZADD', KEYS[2], ARGV[5], ARGV[4])
            redis.call('EXPIRE', KEYS[2], ARGV[3])
        end
        return 'applied'
        "#,
    )
}
