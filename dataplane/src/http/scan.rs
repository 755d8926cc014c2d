//! [`HeadScanner`]: when to re-parse a head that arrives in pieces.
//!
//! Parsing from the start on every read lets a client that sends one byte
//! per packet make the gateway scan a 64 KiB head tens of thousands of
//! times. The scanner looks only at the new bytes and says "parse now" at
//! the end of the first line (so a bad request line is rejected early),
//! when the blank line that ends a head appears, or when the buffer passes
//! the head limit (so the parser reports the size error).

use super::Limits;

/// Tracks how much of a growing head buffer has been looked at.
#[derive(Debug, Default, Clone)]
pub struct HeadScanner {
    scanned: usize,
    first_line_seen: bool,
}

impl HeadScanner {
    /// Whether `buf` (which only grows between calls, from the start of the
    /// head) is worth parsing now.
    pub fn should_parse(&mut self, buf: &[u8], limits: &Limits) -> bool {
        // Back up 3 bytes: the terminator may straddle two reads.
        let from = self.scanned.saturating_sub(3).min(buf.len());
        let new = &buf[from..];
        self.scanned = buf.len();
        if buf.len() > limits.max_head_bytes {
            return true;
        }
        if !self.first_line_seen && new.contains(&b'\n') {
            self.first_line_seen = true;
            return true;
        }
        new.windows(4).any(|w| w == b"\r\n\r\n")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_at_first_line_end_then_at_head_end_only() {
        let limits = Limits {
            max_head_bytes: 1024,
        };
        let head = b"GET / HTTP/1.1\r\nHost: a\r\nX: y\r\n\r\n";
        let mut scanner = HeadScanner::default();
        let mut parses = Vec::new();
        for end in 1..=head.len() {
            if scanner.should_parse(&head[..end], &limits) {
                parses.push(end);
            }
        }
        // After "GET / HTTP/1.1\r\n" (16 bytes), and when the head is whole.
        assert_eq!(parses, vec![16, head.len()]);
    }

    #[test]
    fn terminator_split_across_reads_is_found() {
        let limits = Limits::default();
        let mut scanner = HeadScanner::default();
        assert!(scanner.should_parse(b"GET / HTTP/1.1\r\nHost: a\r", &limits));
        assert!(!scanner.should_parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r", &limits));
        assert!(scanner.should_parse(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n", &limits));
    }

    #[test]
    fn over_the_limit_always_parses() {
        let limits = Limits { max_head_bytes: 8 };
        let mut scanner = HeadScanner::default();
        assert!(scanner.should_parse(b"GET /aaaa", &limits));
    }
}
