//! The C ABI of the zygote library (the crate built with `--features zygote-lib` as a cdylib).
//! The zygote's interpreter loads it and calls these in this order: `init` once, then per run
//! `next`, fork, and `enter` in the child or `adopt` in the zygote (or `refuse`, when the fork
//! failed). See `inside`.

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

/// In the zygote, after forking `child`: takes over waiting for the run it starts.
#[unsafe(no_mangle)]
pub extern "C" fn airlock_zygote_adopt(child: c_int) {
    inside::adopt(child)
}

/// In the zygote, when forking for the pending run failed with `errno`: fails that run alone.
#[unsafe(no_mangle)]
pub extern "C" fn airlock_zygote_refuse(errno: c_int) {
    inside::refuse(errno)
}

/// In the forked child: isolates it. Returns 0 only in the run's process; -errno if called
/// out of order. Any other failure ends the process after reporting it to the supervisor.
#[unsafe(no_mangle)]
pub extern "C" fn airlock_zygote_enter() -> c_int {
    inside::enter()
}

/// In the run's process, at its end: exits with `status` without waiting for its memory to be
/// torn down (see `vfork::exit_leaving_memory`). Never returns.
#[unsafe(no_mangle)]
pub extern "C" fn airlock_zygote_exit(status: c_int) {
    super::vfork::exit_leaving_memory(status)
}
