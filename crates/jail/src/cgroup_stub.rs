use crate::error::JailError;
use std::os::fd::BorrowedFd;
pub struct CgroupLimits {
    pub memory_bytes: u64,
    pub pids: u64,
    pub cpu_millis: u64,
}
#[derive(Default)]
pub struct CgroupUsage {
    pub memory_peak_bytes: Option<u64>,
    pub cpu_ns: Option<u64>,
    pub oom: bool,
}
pub struct Cgroup;
impl Cgroup {
    pub fn create(_n: &str, _l: &CgroupLimits) -> Result<Cgroup, JailError> {
        Err(JailError::Unavailable {
            layer: "cgroup",
            why: "stub".into(),
            fix: "stub".into(),
        })
    }
    pub fn dir_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }
    pub fn attach(&self, _p: i32) -> Result<(), JailError> {
        Ok(())
    }
    pub fn usage(&self) -> CgroupUsage {
        CgroupUsage::default()
    }
    pub fn pids(&self) -> Vec<i32> {
        vec![]
    }
    pub fn kill(&self) -> bool {
        false
    }
    pub fn destroy(self) -> Result<(), JailError> {
        Ok(())
    }
}
pub struct HostCgroups {
    pub usable: Result<(), String>,
}
impl HostCgroups {
    pub fn describe(&self) -> String {
        "stub".into()
    }
}
pub fn probe() -> HostCgroups {
    HostCgroups {
        usable: Err("stub".into()),
    }
}
