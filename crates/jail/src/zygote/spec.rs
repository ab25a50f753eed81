//! What every child of one zygote gets, sent by the supervisor once when the zygote starts: a
//! short text of `key value` lines, so it can be read without a serialization library inside
//! the zygote.

/// Per-child settings the zygote cannot take from its own state.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct Spec {
    /// RLIMIT_CPU of each run (the zygote itself has none).
    pub cpu_seconds: u64,
    /// RLIMIT_NOFILE of each run (the zygote's own is larger: it holds descriptors of every
    /// run in flight).
    pub open_files: u64,
    /// Sizes of each child's fresh tmpfs mounts.
    pub tmp_bytes: u64,
    pub workspace_bytes: u64,
    pub shm_bytes: u64,
    /// Each child gets its own network namespace with loopback up (`Network::None`).
    pub own_network: bool,
}

const MAGIC: &str = "airlock-zygote-spec 2";

impl Spec {
    pub(crate) fn encode(&self) -> Vec<u8> {
        format!(
            "{MAGIC}\ncpu {}\nfiles {}\ntmp {}\nworkspace {}\nshm {}\nnetwork {}\n",
            self.cpu_seconds,
            self.open_files,
            self.tmp_bytes,
            self.workspace_bytes,
            self.shm_bytes,
            u8::from(self.own_network)
        )
        .into_bytes()
    }

    #[cfg_attr(not(feature = "zygote-lib"), allow(dead_code))]
    /// `None` for anything but exactly what `encode` writes.
    pub(crate) fn decode(bytes: &[u8]) -> Option<Spec> {
        let text = std::str::from_utf8(bytes).ok()?;
        let mut lines = text.lines();
        if lines.next()? != MAGIC {
            return None;
        }
        let mut spec = Spec::default();
        let mut seen = 0;
        for line in lines {
            let (key, value) = line.split_once(' ')?;
            let value: u64 = value.parse().ok()?;
            match key {
                "cpu" => spec.cpu_seconds = value,
                "files" => spec.open_files = value,
                "tmp" => spec.tmp_bytes = value,
                "workspace" => spec.workspace_bytes = value,
                "shm" => spec.shm_bytes = value,
                "network" if value <= 1 => spec.own_network = value == 1,
                _ => return None,
            }
            seen += 1;
        }
        (seen == 6).then_some(spec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_and_refuses_anything_else() {
        let spec = Spec {
            cpu_seconds: 32,
            open_files: 1024,
            tmp_bytes: 64 << 20,
            workspace_bytes: 256 << 20,
            shm_bytes: 16 << 20,
            own_network: true,
        };
        assert_eq!(Spec::decode(&spec.encode()), Some(spec.clone()));
        let text = String::from_utf8(spec.encode()).unwrap();
        for bad in [
            text.replace(MAGIC, "airlock-zygote-spec 1"),
            text.replace("cpu 32", "cpu -1"),
            text.replace("network 1", "network 2"),
            text.replace("shm", "ipc"),
            text.lines().take(6).collect::<Vec<_>>().join("\n"),
            format!("{text}cpu 1\n"),
            String::new(),
        ] {
            assert_eq!(Spec::decode(bad.as_bytes()), None, "{bad:?}");
        }
    }
}
