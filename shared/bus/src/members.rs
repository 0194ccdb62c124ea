//! The table `orderbus_shard_members`: which replicas consume a sharded subscription (the SQL
//! of [`crate::shards`]).

use std::time::Duration;

use sqlx::PgPool;

/// Renews `member`'s row for `queue` and returns the live members (renewed within `ttl`),
/// sorted, `member` included.
pub(crate) async fn heartbeat(
    pool: &PgPool,
    queue: &str,
    member: &str,
    ttl: Duration,
) -> Result<Vec<String>, sqlx::Error> {
    let mut live: Vec<String> = sqlx::query_scalar(
        "WITH renewed AS ( \
             INSERT INTO orderbus_shard_members (queue, member) VALUES ($1, $2) \
             ON CONFLICT (queue, member) DO UPDATE SET seen_at = clock_timestamp()) \
         SELECT member FROM orderbus_shard_members \
         WHERE queue = $1 AND member <> $2 \
           AND seen_at > clock_timestamp() - make_interval(secs => $3)",
    )
    .bind(queue)
    .bind(member)
    .bind(ttl.as_secs_f64())
    .fetch_all(pool)
    .await?;
    // The statement's snapshot cannot see its own insert: add this member by hand.
    live.push(member.to_owned());
    live.sort();
    Ok(live)
}

/// Removes `member`'s row (a clean shutdown: the others take its shards at once) and rows of
/// members gone for an hour.
pub(crate) async fn leave(pool: &PgPool, queue: &str, member: &str) -> Result<(), sqlx::Error> {
    sqlx::query(
        "DELETE FROM orderbus_shard_members \
         WHERE queue = $1 AND (member = $2 OR seen_at < clock_timestamp() - interval '1 hour')",
    )
    .bind(queue)
    .bind(member)
    .execute(pool)
    .await?;
    Ok(())
}

/// The shards (of `n`) that `member` should work, given the live members: shard `i` belongs to
/// the member at position `i mod members` of the sorted list.
pub(crate) fn preferred(n: usize, live: &[String], member: &str) -> Vec<bool> {
    let position = live.iter().position(|m| m == member);
    (0..n)
        .map(|i| position.is_none_or(|k| i % live.len().max(1) == k))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::preferred;

    #[test]
    fn shards_are_dealt_round_robin_over_the_sorted_members() {
        let live = vec!["a".to_owned(), "b".to_owned(), "c".to_owned()];
        assert_eq!(preferred(4, &live, "a"), [true, false, false, true]);
        assert_eq!(preferred(4, &live, "b"), [false, true, false, false]);
        assert_eq!(preferred(4, &live, "c"), [false, false, true, false]);
        // Alone (or not yet listed): every shard.
        assert_eq!(preferred(3, &["a".to_owned()], "a"), [true, true, true]);
        assert_eq!(preferred(2, &live, "z"), [true, true]);
    }
}
