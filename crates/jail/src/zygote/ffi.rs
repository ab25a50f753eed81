//! The C ABI of the zygote library (the crate built with `--features zygote-lib` as a cdylib).
//! The zygote's interpreter loads it and calls these in this order: `init` once, then per run
//! `next` and `spawn` (between Python's own before- and after-fork hooks), which returns in
//! the zygote and, isolated, in the run's process; `exit` there at its end. See `inside`.

use std::os::raw::c_int;

use super::inside;

/// Reads the spec from the control socket `control` (descriptor 3). 0, or an errno.
#[unsafe(no_mangle)]
pub extern "C" fn airlock_zygote_init(control: c_int) -> c_int {
    inside::init(control)
}

/// Waits for the next run: 1 when one is pending, 0 when the supervisor is gone, -errno.
#[unsafe(no_mangle)]
pub extern "C" fn airlock_zygote_next() -> c_int {
    inside::next()
}

/// In the zygote, for the pending run: starts the run's process, which returns 0 here fully
/// isolated; the zygote gets a pid, or -errno when the run could not be started (that run is
/// failed, with why on its status pipe).
#[unsafe(no_mangle)]
pub extern "C" fn airlock_zygote_spawn() -> c_int {
    inside::spawn()
}

/// In the run's process, at its end: exits with `status` without waiting for its memory to be
/// torn down (see `vfork::exit_leaving_memory`). Never returns.
#[unsafe(no_mangle)]
pub extern "C" fn airlock_zygote_exit(status: c_int) {
    super::vfork::exit_leaving_memory(status)
}
