//! One semantic problem in a configuration, found by validation or
//! compilation, before `locate` gives it a file position.

/// A problem before it is given a file position.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Problem {
    /// The dotted field path, e.g. `routes[2].authz.allow[0].spiffe_id`.
    pub path: String,
    pub message: String,
}

/// Problems collected by validation: every one is reported, not just the
/// first.
#[derive(Debug, Default)]
pub(super) struct Problems(pub Vec<Problem>);

impl Problems {
    pub(super) fn push(&mut self, path: impl Into<String>, message: impl Into<String>) {
        self.0.push(Problem {
            path: path.into(),
            message: message.into(),
        });
    }
}
