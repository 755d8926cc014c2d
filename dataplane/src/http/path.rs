//! Request path normalisation (sans-IO), done before route matching so a
//! route and its authorization rules see the same path the upstream gets:
//!
//! 1. percent-decoding of the unreserved characters (RFC 3986 §2.3: `A-Z
//!    a-z 0-9 - . _ ~`), other escapes kept with uppercase hex digits
//!    (§6.2.2.1); a malformed escape (`%`, `%4`, `%zz`) is refused;
//! 2. an encoded `/` or `\` (`%2F`, `%5C`) kept as it is, or refused;
//! 3. repeated slashes merged (optional);
//! 4. dot segments removed (RFC 3986 §5.2.4) — a `..` that would climb
//!    above the root is refused rather than clamped, since an upstream
//!    that resolves paths on a file system may not clamp the same way.
//!
//! A path that needs none of this is not copied ([`normalize`] returns
//! `None`). Normalising a normalised path changes nothing; the output
//! always starts with `/` and has no `.` or `..` segment. Never panics.

/// How a listener normalises paths.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PathRules {
    /// Normalise at all (default true).
    pub normalize: bool,
    /// Merge repeated slashes (default true).
    pub merge_slashes: bool,
    /// Refuse `%2F` and `%5C` (default false: kept encoded).
    pub reject_encoded_slashes: bool,
}

impl Default for PathRules {
    fn default() -> Self {
        PathRules {
            normalize: true,
            merge_slashes: true,
            reject_encoded_slashes: false,
        }
    }
}

/// Why a path was refused (400).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    #[error("malformed percent-encoding in the path")]
    BadEscape,
    #[error("encoded slash or backslash in the path")]
    EncodedSlash,
    #[error("the path climbs above the root")]
    AboveRoot,
}

fn hex(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

fn unreserved(b: u8) -> bool {
    b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~')
}

/// Whether `path` may need work: an escape, a doubled slash, or a segment
/// starting with a dot. `false` means [`normalize`] would change nothing.
fn may_need_work(path: &[u8]) -> bool {
    path.iter().enumerate().any(|(i, &b)| match b {
        b'%' => true,
        b'/' => matches!(path.get(i + 1), Some(b'/' | b'.')),
        _ => false,
    })
}

/// Normalises `path` (no query; origin-form, starting with `/`). `Ok(None)`:
/// already normal, use it as it is. `*` and paths not starting with `/` are
/// left alone.
pub fn normalize(path: &str, rules: PathRules) -> Result<Option<String>, PathError> {
    let bytes = path.as_bytes();
    if !rules.normalize || bytes.first() != Some(&b'/') || !may_need_work(bytes) {
        return Ok(None);
    }
    // 1, 2: escapes.
    let mut decoded = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        if b != b'%' {
            decoded.push(b);
            i += 1;
            continue;
        }
        let (Some(hi), Some(lo)) = (
            bytes.get(i + 1).copied().and_then(hex),
            bytes.get(i + 2).copied().and_then(hex),
        ) else {
            return Err(PathError::BadEscape);
        };
        let c = hi << 4 | lo;
        if matches!(c, b'/' | b'\\') && rules.reject_encoded_slashes {
            return Err(PathError::EncodedSlash);
        }
        if unreserved(c) {
            decoded.push(c);
        } else {
            const HEX: &[u8; 16] = b"0123456789ABCDEF";
            decoded.extend_from_slice(&[b'%', HEX[usize::from(hi)], HEX[usize::from(lo)]]);
        }
        i += 3;
    }
    // 3, 4: segments.
    let mut out: Vec<&[u8]> = Vec::new();
    let segments: Vec<&[u8]> = decoded[1..].split(|&b| b == b'/').collect();
    let last = segments.len() - 1;
    let mut trailing_slash = false;
    for (k, seg) in segments.iter().enumerate() {
        match *seg {
            b"." => trailing_slash = k == last,
            b".." => {
                if out.pop().is_none() {
                    return Err(PathError::AboveRoot);
                }
                trailing_slash = k == last;
            }
            b"" if rules.merge_slashes => trailing_slash = k == last && k > 0,
            seg => {
                out.push(seg);
                trailing_slash = false;
            }
        }
    }
    let mut normal = Vec::with_capacity(decoded.len());
    for seg in &out {
        normal.push(b'/');
        normal.extend_from_slice(seg);
    }
    if trailing_slash || normal.is_empty() {
        normal.push(b'/');
    }
    // Only ASCII bytes of the input, or ASCII escapes, were written.
    let normal = String::from_utf8(normal).map_err(|_| PathError::BadEscape)?;
    Ok((normal != path).then_some(normal))
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn norm(p: &str) -> Result<String, PathError> {
        normalize(p, PathRules::default()).map(|n| n.unwrap_or_else(|| p.to_owned()))
    }

    #[test]
    fn dot_segments_slashes_and_escapes() {
        for (from, to) in [
            ("/", "/"),
            ("/a/b", "/a/b"),
            ("/a/./b", "/a/b"),
            ("/a/../b", "/b"),
            ("/a/b/..", "/a/"),
            ("/a/b/.", "/a/b/"),
            ("/a//b///c", "/a/b/c"),
            ("//a", "/a"),
            ("/a/", "/a/"),
            ("/%41%62c", "/Abc"),
            ("/a%2e%2E/b", "/a../b"),
            ("/a/%2e%2e/b", "/b"),
            ("/%7e/%5F", "/~/_"),
            ("/%2f/%3a", "/%2F/%3A"),
            ("/.well-known/x", "/.well-known/x"),
            ("/a/..b", "/a/..b"),
        ] {
            assert_eq!(norm(from).as_deref(), Ok(to), "{from}");
        }
        assert_eq!(normalize("/a/b", PathRules::default()), Ok(None), "no copy");
    }

    #[test]
    fn refusals() {
        assert_eq!(norm("/../etc/passwd"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a/../../b"), Err(PathError::AboveRoot));
        assert_eq!(norm("/%2e%2e/x"), Err(PathError::AboveRoot));
        assert_eq!(norm("/a%"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%4"), Err(PathError::BadEscape));
        assert_eq!(norm("/a%zz"), Err(PathError::BadEscape));
        let strict = PathRules {
            reject_encoded_slashes: true,
            ..PathRules::default()
        };
        assert_eq!(normalize("/a%2Fb", strict), Err(PathError::EncodedSlash));
        assert_eq!(normalize("/a%5cb", strict), Err(PathError::EncodedSlash));
        assert_eq!(normalize("/a%2Fb", PathRules::default()), Ok(None));
    }

    #[test]
    fn rules_can_switch_parts_off() {
        let keep_slashes = PathRules {
            merge_slashes: false,
            ..PathRules::default()
        };
        assert_eq!(
            normalize("/a//b/./c", keep_slashes),
            Ok(Some("/a//b/c".into()))
        );
        let off = PathRules {
            normalize: false,
            ..PathRules::default()
        };
        assert_eq!(normalize("/a/../../b", off), Ok(None));
    }

    proptest! {
        /// Normalising twice equals normalising once; no output escapes the
        /// root or keeps a dot segment or a doubled slash; never a panic.
        #[test]
        fn normalising_is_idempotent_and_stays_under_the_root(
            segs in prop::collection::vec(
                prop_oneof![
                    Just("".to_owned()), Just(".".to_owned()), Just("..".to_owned()),
                    Just("%2e".to_owned()), Just("%2E%2e".to_owned()), Just("%2F".to_owned()),
                    "[a-zA-Z0-9._~%-]{1,6}",
                ],
                0..10,
            ),
            noise in ".{0,20}",
        ) {
            let path = format!("/{}", segs.join("/"));
            let _ = normalize(&noise, PathRules::default());
            if let Ok(once) = norm(&path) {
                prop_assert!(once.starts_with('/'));
                prop_assert!(!once.contains("//"), "{once}");
                prop_assert!(once.split('/').all(|s| s != "." && s != ".."), "{once}");
                prop_assert_eq!(norm(&once), Ok(once.clone()));
            }
        }
    }
}
