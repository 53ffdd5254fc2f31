//! The enclave as `/init` of its VM (`--guest-init`, set by the image's
//! measured kernel command line). There is no other userspace: before the
//! agent starts, it mounts the kernel filesystems, loads the modules the
//! image lists, brings up the network the host relays over, and mounts the
//! host's two 9p shares: the sealed bundles (read-only ciphertext) and the
//! audit log directory.
//!
//! Every step fails closed: an enclave whose audit directory or network
//! cannot be set up exits, and the VM powers off for the host to restart it.

use std::ffi::CStr;
use std::net::Ipv4Addr;
use std::path::Path;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use rustix::mount::{mount, MountFlags};

/// Where the image lists its modules in load order.
const MODULE_LIST: &str = "/lib/modules/cloister.load";
/// 9p tags the host exports (see `cloister-image`).
const AUDIT_TAG: &str = "cloister-audit";
const SEALED_TAG: &str = "cloister-sealed";
/// How long devices may take to appear after their driver loads.
const DEVICE_WAIT: Duration = Duration::from_secs(20);

/// The guest network settings from the command line.
#[derive(Debug, Clone, Copy)]
pub(crate) struct GuestAddress {
    address: Ipv4Addr,
    prefix: u8,
}

impl std::str::FromStr for GuestAddress {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (address, prefix) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} is not ADDRESS/PREFIX"))?;
        let address = address
            .parse()
            .map_err(|e| format!("{address:?} is not an IPv4 address: {e}"))?;
        let prefix: u8 = prefix
            .parse()
            .ok()
            .filter(|p| *p <= 32)
            .ok_or_else(|| format!("{prefix:?} is not a prefix length 0-32"))?;
        Ok(Self { address, prefix })
    }
}

/// Prepares the VM for the agent. `audit_dir` and `sealed_dir` are where the
/// host's shares are mounted.
pub(crate) fn init(
    address: GuestAddress,
    audit_dir: &Path,
    sealed_dir: Option<&Path>,
) -> anyhow::Result<()> {
    if std::process::id() != 1 {
        bail!(
            "--guest-init is for the VM's /init (process 1), not process {}",
            std::process::id()
        );
    }
    let started = Instant::now();
    mount_kernel_filesystems()?;
    let loaded = load_modules(Path::new(MODULE_LIST))?;
    tracing::info!(modules = loaded, "kernel modules loaded");
    configure_network(address)?;
    mount_share(AUDIT_TAG, audit_dir, false)?;
    if let Some(dir) = sealed_dir {
        mount_share(SEALED_TAG, dir, true)?;
    }
    tracing::info!(
        millis = started.elapsed().as_millis() as u64,
        %address.address,
        "guest ready: network up, host shares mounted"
    );
    Ok(())
}

/// After the agent stops: flush, then power off so QEMU exits and the host
/// notices (process 1 must never simply return).
pub(crate) fn power_off(code: u8) -> ! {
    eprintln!("cloister-enclave: stopped with exit status {code}; powering off");
    rustix::fs::sync();
    let _ = rustix::system::reboot(rustix::system::RebootCommand::PowerOff);
    // reboot(2) does not return on success; if it failed, exiting makes the
    // kernel panic, and `panic=-1` on the command line resets the VM.
    std::process::exit(i32::from(code))
}

fn mount_kernel_filesystems() -> anyhow::Result<()> {
    let plain = MountFlags::NOSUID | MountFlags::NOEXEC | MountFlags::NODEV;
    for (source, target, fstype, flags) in [
        ("proc", "/proc", "proc", plain),
        ("sysfs", "/sys", "sysfs", plain),
        (
            "devtmpfs",
            "/dev",
            "devtmpfs",
            MountFlags::NOSUID | MountFlags::NOEXEC,
        ),
        ("tmpfs", "/tmp", "tmpfs", plain),
    ] {
        mount(source, target, fstype, flags, None::<&CStr>)
            .with_context(|| format!("cannot mount {fstype} on {target}"))?;
    }
    Ok(())
}

/// Loads each module the list names, in order. Returns how many.
fn load_modules(list: &Path) -> anyhow::Result<usize> {
    let text = std::fs::read_to_string(list)
        .with_context(|| format!("cannot read the module list {}", list.display()))?;
    let mut count = 0;
    for line in text.lines().filter(|l| !l.trim().is_empty()) {
        let path = Path::new("/").join(line.trim());
        let file = std::fs::File::open(&path)
            .with_context(|| format!("cannot open module {}", path.display()))?;
        match rustix::system::finit_module(&file, c"", 0) {
            Ok(()) => count += 1,
            Err(rustix::io::Errno::EXIST) => {}
            Err(e) => bail!("cannot load module {}: {e}", path.display()),
        }
    }
    Ok(count)
}

/// The first interface that is not loopback, once its driver has found it.
fn wait_for_interface() -> anyhow::Result<(String, u32)> {
    let deadline = Instant::now() + DEVICE_WAIT;
    loop {
        let mut names: Vec<String> = std::fs::read_dir("/sys/class/net")
            .context("cannot list /sys/class/net")?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().into_string().ok())
            .filter(|n| n != "lo")
            .collect();
        names.sort();
        if let Some(name) = names.into_iter().next() {
            let index = std::fs::read_to_string(format!("/sys/class/net/{name}/ifindex"))
                .with_context(|| format!("cannot read {name}'s ifindex"))?;
            let index = index
                .trim()
                .parse()
                .with_context(|| format!("{name}'s ifindex {index:?} is not a number"))?;
            return Ok((name, index));
        }
        if Instant::now() > deadline {
            bail!(
                "no network interface appeared within {}s (is the VM's virtio-net device missing?)",
                DEVICE_WAIT.as_secs()
            );
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

fn configure_network(address: GuestAddress) -> anyhow::Result<()> {
    let (name, index) = wait_for_interface()?;
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the network setup runtime")?;
    runtime.block_on(async {
        let (connection, handle, _) =
            rtnetlink::new_connection().context("cannot open a netlink socket")?;
        let task = tokio::spawn(connection);
        let loopback = 1;
        for link in [loopback, index] {
            handle
                .link()
                .set(rtnetlink::LinkUnspec::new_with_index(link).up().build())
                .execute()
                .await
                .with_context(|| format!("cannot bring up interface {link}"))?;
        }
        handle
            .address()
            .add(index, address.address.into(), address.prefix)
            .execute()
            .await
            .with_context(|| {
                format!("cannot give {name} {}/{}", address.address, address.prefix)
            })?;
        task.abort();
        anyhow::Ok(())
    })?;
    tracing::info!(interface = %name, "network configured");
    Ok(())
}

/// Mounts the host's 9p share `tag` on `target`, waiting for its virtio
/// channel to register.
fn mount_share(tag: &str, target: &Path, read_only: bool) -> anyhow::Result<()> {
    std::fs::create_dir_all(target)
        .with_context(|| format!("cannot create {}", target.display()))?;
    let mut flags = MountFlags::NOSUID | MountFlags::NODEV | MountFlags::NOEXEC;
    if read_only {
        flags |= MountFlags::RDONLY;
    }
    // cache=none: every write and fsync reaches the host, which the audit
    // log's durability depends on.
    let options = c"trans=virtio,version=9p2000.L,cache=none,msize=262144";
    let deadline = Instant::now() + DEVICE_WAIT;
    loop {
        match mount(tag, target, "9p", flags, Some(options)) {
            Ok(()) => {
                tracing::info!(tag, target = %target.display(), read_only, "host share mounted");
                return Ok(());
            }
            Err(rustix::io::Errno::NOENT) if Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => bail!(
                "cannot mount the host's 9p share {tag:?} on {}: {e} (did the host export it?)",
                target.display()
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn guest_addresses_parse_and_bad_ones_are_refused() {
        let a: GuestAddress = "10.0.2.15/24".parse().unwrap();
        assert_eq!(a.address, Ipv4Addr::new(10, 0, 2, 15));
        assert_eq!(a.prefix, 24);
        for bad in [
            "10.0.2.15",
            "10.0.2.15/33",
            "host/24",
            "10.0.2/24",
            "10.0.2.15/x",
        ] {
            assert!(bad.parse::<GuestAddress>().is_err(), "{bad}");
        }
    }

    #[test]
    fn init_refuses_to_run_outside_process_one() {
        let err = init(
            "10.0.2.15/24".parse().unwrap(),
            Path::new("/nonexistent"),
            None,
        )
        .unwrap_err();
        assert!(err.to_string().contains("process 1"), "{err}");
    }
}
