//! "Restore, not fork" (docs/security.md): how a pool of use-once Python sandboxes whose
//! packages are not trusted gets them imported without paying the import in every sandbox.
//!
//! Once per pool, a freezer sandbox, built exactly as the pool's sandboxes are, imports the
//! packages and freezes its interpreter into an image (`agents/freeze.py`, the jail's
//! `freeze`), then exits. Each of the pool's sandboxes is then a cold sandbox like any other
//! whose program is the restorer (`crates/restore`): it rebuilds the interpreter from the image,
//! copy-on-write, and resumes it, waiting for its code. No process outlives its run or is shared
//! between runs, unlike a zygote's: the image is read-only data, each run's starting state, the
//! same as if the run had imported the packages itself. So it needs no trust in the packages.

use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use jail::image::{Image, ImageFile};
use jail::{Command, File, Policy, Sandbox};

use crate::diagnose::Language;
use crate::environment::Environment;
use crate::error::RuntimeError;
use crate::request::RunRequest;
use crate::warm::{self, PoolSetup};

const PYTHON_FREEZE: &str = include_str!("agents/freeze.py");
const RESTORER_PATH: &str = "/airlock/restore";
/// How long the freezer may take to import its packages and write the image.
const FREEZE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(120);
/// The freezer's stderr kept for the log when it fails.
const FREEZER_STDERR: usize = 4096;

/// Whether the pool for requests like `req` restores a frozen interpreter: Python with packages
/// it does not trust (a zygote serves trusted ones), in a sandbox with nothing writable but its
/// own tmpfs mounts, on a build that has a restorer.
pub(crate) fn serves(req: &RunRequest) -> bool {
    jail::image::supported()
        && req.language == Language::Python
        && !req.packages.is_empty()
        && !req.trust_packages
        && warm::self_contained(req)
}

/// A pool's image and the environment it was made with, held for as long as it is used.
pub(crate) struct PoolImage {
    image: Image,
    pub(crate) env: Option<Arc<Environment>>,
    born: Instant,
}

impl PoolImage {
    pub(crate) fn born(&self) -> Instant {
        self.born
    }

    pub(crate) fn size(&self) -> u64 {
        self.image.size()
    }

    pub(crate) fn reader(&self) -> Result<OwnedFd, RuntimeError> {
        Ok(self.image.reader()?)
    }
}

/// The descriptor the image is on in the freezer and in each restoring sandbox: after the
/// control channel (3) and the result channel (4), when there is one.
pub(crate) fn image_fd(template: &RunRequest) -> i32 {
    if template.result_channel { 5 } else { 4 }
}

/// The agent of the freezer, which is also where a restored interpreter resumes.
fn script(template: &RunRequest, policy: &Policy) -> String {
    format!(
        "{}_AIRLOCK_IMAGE_FD = {}\n_AIRLOCK_POOL_THREADS = {}\n{PYTHON_FREEZE}\n{}",
        warm::preload_prelude(warm::ZYGOTE_PRELOAD, template),
        image_fd(template),
        warm::pool_threads(policy.limits.cpu_millis),
        warm::PYTHON_AGENT
    )
}

/// The files both the freezer and the restoring sandboxes have: the same agent, at the same
/// path, as the restored interpreter's own file.
fn add_files(policy: &mut Policy, template: &RunRequest) {
    let agent = warm::agent_file("/airlock/agent.py", &script(template, policy));
    policy.files.push(agent);
}

/// Makes the image for requests like `template` in a freezer sandbox.
pub(crate) fn freeze(template: &RunRequest) -> Result<PoolImage, RuntimeError> {
    let PoolSetup {
        interp,
        mut policy,
        env,
    } = warm::pool_setup(template)?;
    add_files(&mut policy, template);
    policy.files.push(File {
        target: PathBuf::from("/airlock/zygote.so"),
        contents: warm::ZYGOTE_LIBRARY.to_vec(),
        mode: 0o555,
    });
    policy.limits.wall_timeout = FREEZE_TIMEOUT;
    policy.limits.cpu_seconds = policy.limits.cpu_rlimit() + FREEZE_TIMEOUT.as_secs();
    if template.result_channel {
        crate::channel::announce(&mut policy, 4);
    }
    let image = ImageFile::create()?;
    // The channels a restored interpreter will find at 3 and 4; the freezer itself never
    // uses them.
    let (ours, theirs) = std::os::unix::net::UnixStream::pair()
        .map_err(|e| RuntimeError::host("creating a control channel", e))?;
    // Ours closed at once: nothing the freezer sends may be parked on it past its sandbox.
    drop(ours);
    let mut command = Command::new(&interp.executable)
        .arg("/airlock/agent.py")
        .pass_fd(theirs.into());
    if template.result_channel {
        let (_reader, writer) =
            std::io::pipe().map_err(|e| RuntimeError::host("creating a result channel", e))?;
        command = command.pass_fd(OwnedFd::from(writer));
    }
    let command = command.pass_fd(image.writer()?);
    let sandbox = Sandbox::spawn(&policy, &command)?;
    drop(command); // the image's writers are the freezer's alone
    let outcome = sandbox.wait(|_, _| {})?;
    if outcome.exit_code != Some(0) || outcome.timed_out || outcome.init_died {
        let tail = outcome.stderr.len().saturating_sub(FREEZER_STDERR);
        // Its text is the sandbox's: escaped, so that it cannot drive a terminal showing the log.
        let why: String = String::from_utf8_lossy(&outcome.stderr[tail..])
            .trim()
            .chars()
            .flat_map(char::escape_default)
            .collect();
        return Err(RuntimeError::host(
            "freezing an interpreter with the pool's packages",
            std::io::Error::other(format!(
                "the freezer ended with {}: {}",
                match (outcome.exit_code, outcome.signal, outcome.timed_out) {
                    (_, _, true) => "a timeout".to_string(),
                    (Some(c), _, _) => format!("status {c}"),
                    (_, Some(s), _) => format!("signal {s}"),
                    _ => "no status".to_string(),
                },
                why
            )),
        ));
    }
    // Every process of the freezer is gone with its sandbox: nothing can write the image now.
    Ok(PoolImage {
        image: image.seal(policy.limits.memory_bytes)?,
        env,
        born: Instant::now(),
    })
}

/// The program of a sandbox that restores `image` for requests like `template`, with the
/// files it needs added to `policy`. The caller passes the control channel, the result
/// channel if any, then the image (`image_fd`).
pub(crate) fn restorer(policy: &mut Policy, template: &RunRequest) -> Command {
    add_files(policy, template);
    policy.files.push(File {
        target: PathBuf::from(RESTORER_PATH),
        contents: jail::image::RESTORER.to_vec(),
        // Readable, unlike the init: the restored interpreter is then as dumpable as one a
        // cold run starts, to the run's own processes.
        mode: 0o555,
    });
    Command::new(RESTORER_PATH).arg(image_fd(template).to_string())
}
