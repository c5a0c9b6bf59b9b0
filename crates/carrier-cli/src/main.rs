//! The `carrier` command-line tool (being written).
fn main() {}
