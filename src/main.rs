//! The `sipjab` command line.
fn main() {}
