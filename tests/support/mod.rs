//! The harness moved to `tests/it/support/`; this keeps `#[path = "../tests/support/mod.rs"]`
//! in `examples/demo.rs` working until it points there.
#![allow(unused_imports)]

#[path = "../it/support/mod.rs"]
mod moved;

pub use moved::*;
