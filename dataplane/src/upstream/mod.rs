//! upstream (in progress)
