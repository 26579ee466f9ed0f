//! A Redis Cluster's slot map, as the subscriber keeps it: which primary
//! owns each slot (`CLUSTER SLOTS`), and which slot a channel hashes to.

use std::sync::Arc;

use redis::aio::MultiplexedConnection;
use redis::{RedisResult, Value};

pub(super) const SLOTS: usize = 16_384;

/// A node's address as `CLUSTER SLOTS` gives it.
pub(super) type Addr = Arc<str>;

/// Every slot's primary, from `CLUSTER SLOTS` on a node of `asked_host`.
pub(super) async fn slot_map(
    conn: &mut MultiplexedConnection,
    asked_host: &str,
) -> RedisResult<Vec<Option<Addr>>> {
    let ranges: Vec<Value> = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
    let mut owners = vec![None; SLOTS];
    for range in ranges {
        if let Some((first, last, addr)) = parse_range(&range, asked_host) {
            for owner in owners.iter_mut().take(last + 1).skip(first) {
                *owner = Some(addr.clone());
            }
        }
    }
    // A node that has not joined yet, or was reset, knows no slots: its
    // map is no map.
    if owners.iter().any(Option::is_none) {
        return Err(redis::RedisError::from((
            redis::ErrorKind::Client,
            "the node's slot map does not cover every slot",
        )));
    }
    Ok(owners)
}

/// One `CLUSTER SLOTS` range: first slot, last slot, and the primary's
/// address. An empty or `?` host means the node that was asked.
fn parse_range(range: &Value, asked_host: &str) -> Option<(usize, usize, Addr)> {
    let Value::Array(parts) = range else {
        return None;
    };
    let number = |value: &Value| match value {
        Value::Int(n) => usize::try_from(*n).ok(),
        _ => None,
    };
    let (first, last) = (number(parts.first()?)?, number(parts.get(1)?)?);
    let Value::Array(primary) = parts.get(2)? else {
        return None;
    };
    let host = match primary.first()? {
        Value::BulkString(host) if !host.is_empty() && host.as_slice() != b"?" => {
            String::from_utf8_lossy(host).into_owned()
        }
        _ => asked_host.to_owned(),
    };
    let port = number(primary.get(1)?)?;
    (first <= last && last < SLOTS).then(|| (first, last, Addr::from(format!("{host}:{port}"))))
}

pub(super) fn split_addr(addr: &str) -> (String, u16) {
    match addr.rsplit_once(':') {
        Some((host, port)) => (host.to_owned(), port.parse().unwrap_or(6379)),
        None => (addr.to_owned(), 6379),
    }
}

/// A key's (or shard channel's) cluster slot: CRC16 of its hash tag, or of
/// the whole name when it has none.
pub(super) fn slot(name: &str) -> usize {
    let bytes = name.as_bytes();
    let tagged = bytes.iter().position(|b| *b == b'{').and_then(|open| {
        let close = bytes[open + 1..].iter().position(|b| *b == b'}')?;
        (close > 0).then(|| &bytes[open + 1..open + 1 + close])
    });
    usize::from(crc16::State::<crc16::XMODEM>::calculate(
        tagged.unwrap_or(bytes),
    )) % SLOTS
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_follow_the_hash_tag_as_redis_computes_them() {
        // Values from the `CLUSTER KEYSLOT` documentation.
        assert_eq!(slot("somekey"), 11_058);
        assert_eq!(slot("foo{hash_tag}"), 2_515);
        assert_eq!(slot("{hash_tag}"), 2_515);
        assert_eq!(slot("2fa:access:{001}:changed"), slot("001"));
        // An empty tag does not count: the whole name is hashed.
        assert_ne!(slot("{}a"), slot("{}b"));
    }
}
