//! The timeline service.

#![forbid(unsafe_code)]

pub mod text;
