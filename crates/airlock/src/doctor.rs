//! `airlock doctor`: each isolation layer, available or missing, and what to do about it.

use jail::probe::{Level, host_checks};

pub fn main() -> i32 {
    let checks = host_checks();
    runtime::release_host_resources();
    let mut missing = 0;
    for c in &checks {
        let mark = match c.level {
            Level::Ok => "ok     ",
            Level::Warn => "warn   ",
            Level::Missing => {
                missing += 1;
                "MISSING"
            }
        };
        println!("{mark} {:<16} {}", c.layer, c.detail);
        if let Some(fix) = &c.fix {
            println!("        {:<16} fix: {fix}", "");
        }
    }
    if missing == 0 {
        println!("\nThis host can run sandboxes with the full default profile.");
        0
    } else {
        println!(
            "\n{missing} layer(s) missing: runs are refused until fixed (see the fixes above)."
        );
        1
    }
}
