//! net (in progress)
