//! `x-request-id` values for requests that arrive without one: a per-shard
//! random prefix and a counter, formatted like a UUID without allocating.

use std::cell::Cell;

/// Generates unique request ids on one shard.
#[derive(Debug)]
pub struct RequestIds {
    prefix: u64,
    counter: Cell<u64>,
}

/// A formatted id (36 ASCII bytes, UUID layout).
pub struct RequestId([u8; 36]);

impl RequestId {
    /// The id as text.
    pub fn as_str(&self) -> &str {
        // Only ASCII hex digits and dashes are ever written.
        std::str::from_utf8(&self.0).unwrap_or("")
    }
}

impl RequestIds {
    /// `prefix` should be random per shard and process.
    pub fn new(prefix: u64) -> RequestIds {
        RequestIds {
            prefix,
            counter: Cell::new(0),
        }
    }

    /// The next id.
    pub fn next(&self) -> RequestId {
        let n = self.counter.get().wrapping_add(1);
        self.counter.set(n);
        let value = ((self.prefix as u128) << 64) | n as u128;
        let hex = b"0123456789abcdef";
        let mut out = [b'-'; 36];
        let mut nibble = 0;
        for (i, slot) in out.iter_mut().enumerate() {
            if matches!(i, 8 | 13 | 18 | 23) {
                continue;
            }
            let shift = 124 - 4 * nibble;
            *slot = hex[((value >> shift) & 0xf) as usize];
            nibble += 1;
        }
        RequestId(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_are_uuid_shaped_and_unique() {
        let ids = RequestIds::new(0xdead_beef_0000_0001);
        let a = ids.next();
        let b = ids.next();
        assert_eq!(a.as_str(), "deadbeef-0000-0001-0000-000000000001");
        assert_ne!(a.as_str(), b.as_str());
    }
}
