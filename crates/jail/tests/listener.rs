//! The loopback listener: the sandbox reaches a host-side server only through the listener the
//! jail hands to the supervisor, and nothing else of the host's network.

use std::io::{Read, Write};
use std::net::TcpListener;
use std::path::Path;

use airlock_jail::{CgroupMode, Command, Mount, Policy, Sandbox};

fn policy(port: u16) -> Policy {
    let mounts = ["/usr", "/bin", "/lib", "/lib64"]
        .iter()
        .filter(|p| Path::new(p).exists())
        .map(|p| Mount::same(*p))
        .collect();
    Policy {
        mounts,
        loopback_listener: Some(port),
        cgroup: CgroupMode::BestEffort,
        ..Policy::default()
    }
}

#[test]
fn the_supervisor_serves_the_sandbox_through_its_listener() {
    let code = "import socket\ns = socket.create_connection(('127.0.0.1', 3128), timeout=5)\ns.sendall(b'ping')\nprint(s.recv(16).decode())";
    let mut sb = Sandbox::spawn(
        &policy(3128),
        &Command::new("/usr/bin/python3").args(["-c", code]),
    )
    .unwrap();
    let listener = TcpListener::from(sb.take_listener().expect("a listener"));
    let (mut conn, _) = listener.accept().unwrap();
    let mut buf = [0u8; 4];
    conn.read_exact(&mut buf).unwrap();
    assert_eq!(&buf, b"ping");
    conn.write_all(b"pong").unwrap();
    drop(conn);
    let out = sb.wait(|_, _| {}).unwrap();
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "pong",
        "{out:?}"
    );
    assert!(sb_listener_is_closed(&listener));
}

/// After the run the listener's namespace is gone: accepting never yields a connection.
fn sb_listener_is_closed(listener: &TcpListener) -> bool {
    listener.set_nonblocking(true).unwrap();
    listener.accept().is_err()
}

#[test]
fn a_listener_needs_a_private_network() {
    let mut p = policy(3128);
    p.network = airlock_jail::Network::Host;
    assert!(Sandbox::spawn(&p, &Command::new("/bin/true")).is_err());
    let p = policy(0);
    assert!(Sandbox::spawn(&p, &Command::new("/bin/true")).is_err());
}

#[test]
fn a_passed_descriptor_is_the_only_extra_one() {
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let code = "import os, socket\nprint(sorted(int(f) for f in os.listdir('/proc/self/fd')))\ns = socket.socket(fileno=3)\ns.sendall(b'over fd 3')";
    let cmd = Command::new("/usr/bin/python3")
        .args(["-c", code])
        .pass_fd(theirs.into());
    let sb = Sandbox::spawn(&policy(3128), &cmd).unwrap();
    drop(cmd); // our copy of their end: EOF must come from the sandbox closing it
    let out = sb.wait(|_, _| {}).unwrap();
    let mut got = String::new();
    let mut ours = ours;
    ours.set_read_timeout(Some(std::time::Duration::from_secs(5)))
        .unwrap();
    ours.read_to_string(&mut got).unwrap();
    assert_eq!(got, "over fd 3");
    // 0-2, fd 3, and the one listdir itself opens.
    assert_eq!(
        String::from_utf8_lossy(&out.stdout).trim(),
        "[0, 1, 2, 3, 4]",
        "{out:?}"
    );
}
