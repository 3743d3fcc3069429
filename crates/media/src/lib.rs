//! The media service (work in progress).
#![forbid(unsafe_code)]


