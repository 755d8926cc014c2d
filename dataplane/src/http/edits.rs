//! Operator-configured header edits applied while a head is rewritten
//! (`routes.request_headers` / `routes.response_headers`).

/// Header edits on a forwarded message. Names are lowercase.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HeaderEdits {
    /// Appended after the message's own fields.
    pub add: Vec<(String, String)>,
    /// Replace every field of the name.
    pub set: Vec<(String, String)>,
    /// Dropped.
    pub remove: Vec<String>,
}

impl HeaderEdits {
    pub fn is_empty(&self) -> bool {
        self.add.is_empty() && self.set.is_empty() && self.remove.is_empty()
    }

    /// Whether a field of this name is dropped from the message (removed,
    /// or replaced by a `set`).
    pub fn drops(&self, name: &str) -> bool {
        self.remove.iter().any(|r| r.eq_ignore_ascii_case(name))
            || self.set.iter().any(|(n, _)| n.eq_ignore_ascii_case(name))
    }

    /// The fields to append, `set` first.
    pub fn appended(&self) -> impl Iterator<Item = (&str, &str)> {
        self.set
            .iter()
            .chain(self.add.iter())
            .map(|(n, v)| (n.as_str(), v.as_str()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_edits_drop_set_and_removed_names() {
        let e = HeaderEdits {
            add: vec![("x-a".into(), "1".into())],
            set: vec![("x-b".into(), "2".into())],
            remove: vec!["x-c".into()],
        };
        assert!(e.drops("X-B") && e.drops("x-c") && !e.drops("x-a"));
        let appended: Vec<_> = e.appended().collect();
        assert_eq!(appended, [("x-b", "2"), ("x-a", "1")]);
    }
}
