//! A run's result, with DESIGN §8's field names (shared by the CLI's `--json`, HTTP and Python).

use serde::{Deserialize, Serialize};

use crate::diagnose::ErrorInfo;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    Ok,
    Error,
    Timeout,
    MemoryLimit,
    Killed,
    SandboxError,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TimingMs {
    pub setup_ms: f64,
    pub boot_ms: f64,
    pub execute_ms: f64,
    pub total_ms: f64,
    /// Time to find the run's dependency environment, or to install it on a miss. Not part of
    /// `total_ms` (the sandbox's own time); 0 without packages.
    #[serde(default)]
    pub install_ms: f64,
}

#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct UsageInfo {
    pub cpu_ms: u64,
    pub memory_peak_bytes: u64,
}

#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    pub status: Status,
    pub exit_code: Option<i32>,
    pub signal: Option<i32>,
    /// Captured stdout, decoded as UTF-8 with invalid bytes replaced.
    pub stdout: String,
    pub stderr: String,
    pub stdout_truncated: bool,
    pub stderr_truncated: bool,
    pub error: Option<ErrorInfo>,
    pub timing: TimingMs,
    pub usage: UsageInfo,
    /// "warm" or "cold".
    pub pool: String,
    /// The dependency environment's key, or null without packages.
    pub environment: Option<String>,
    /// Whether the environment was already built (`true`: no install work was done); null
    /// without packages.
    #[serde(default)]
    pub environment_cached: Option<bool>,
    /// The raw bytes, for faces that can carry them.
    #[serde(skip)]
    pub stdout_bytes: Vec<u8>,
    #[serde(skip)]
    pub stderr_bytes: Vec<u8>,
    /// What the program wrote to its result channel (`RunRequest::result_channel`), if open.
    #[serde(skip)]
    pub result: Option<Vec<u8>>,
}
