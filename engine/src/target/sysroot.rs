//! The OSTree deployments of a sysroot, read the way libostree's `ostree_sysroot_load` reads
//! them: the bootloader entries of the current boot version are the source of truth, ordered
//! by their `version` field (highest first), and each entry's `ostree=` argument leads to its
//! deployment directory. The first deployment is the default one, as `ostree admin status`
//! shows; a booted system is identified the way libostree does, falling back to the
//! `ostree=` argument of the kernel command line.

use std::cmp::Ordering;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

use gvariant::aligned_bytes::copy_to_align;
use gvariant::{gv, Marker, Structure};

use super::{read_limited, read_text, TargetError};
use crate::object::Checksum;
use crate::repo::KeyFile;

/// Bootloader entries beyond this many are not read; real systems have two or three.
const MAX_BOOT_ENTRIES: usize = 256;
/// Largest bootloader entry, kernel command line or staged-deployment file read.
const MAX_SMALL_FILE: u64 = 64 * 1024;

/// Where the running system says whether and how it was booted. The defaults are the real
/// places; tests point them into temporary directories.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BootState {
    /// Present when the running system was booted from an OSTree deployment.
    pub ostree_booted: PathBuf,
    /// The kernel command line, holding `ostree=/ostree/boot.N/OS/BOOTCSUM/SERIAL`.
    pub kernel_cmdline: PathBuf,
    /// libostree's record of a deployment staged to be finalized at shutdown.
    pub staged_deployment: PathBuf,
    /// The running root. A sysroot is the booted one only when it is this directory, as in
    /// libostree; a deployment is the booted one when it is this directory.
    pub root: PathBuf,
}

impl Default for BootState {
    fn default() -> Self {
        Self {
            ostree_booted: PathBuf::from("/run/ostree-booted"),
            kernel_cmdline: PathBuf::from("/proc/cmdline"),
            staged_deployment: PathBuf::from("/run/ostree/staged-deployment"),
            root: PathBuf::from("/"),
        }
    }
}

impl BootState {
    /// Whether the running system was booted from an OSTree deployment.
    pub fn ostree_booted(&self) -> bool {
        self.ostree_booted.exists()
    }
}

/// One deployment of a sysroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Deployment {
    /// Position in `ostree admin status` order; 0 is the default deployment.
    pub index: usize,
    /// The stateroot ("OS name") the deployment belongs to.
    pub stateroot: String,
    /// The deployed commit.
    pub commit: Checksum,
    /// The deployment's serial: several deployments of one commit differ by it.
    pub deploy_serial: u32,
    /// The checksum of the deployment's kernel and initramfs (the `boot/` directory name).
    pub boot_checksum: String,
    /// The serial of the deployments sharing that boot checksum.
    pub boot_serial: u32,
    /// Whether the running system is this deployment.
    pub booted: bool,
    /// `<sysroot>/ostree/deploy/<stateroot>/deploy/<commit>.<serial>`.
    pub path: PathBuf,
    /// The origin's `refspec` (`remote:ref` or `ref`), when the deployment has one.
    pub refspec: Option<String>,
    /// The kernel arguments of its bootloader entry, without the `ostree=` one libostree
    /// generates.
    pub kernel_args: Vec<String>,
    /// The bootloader entry it was found through.
    pub boot_entry: PathBuf,
}

impl Deployment {
    /// `<sysroot>/ostree/deploy/<stateroot>/deploy/<commit>.<serial>.origin`.
    pub fn origin_path(&self) -> PathBuf {
        let mut name = self.path.file_name().unwrap_or_default().to_owned();
        name.push(".origin");
        self.path.with_file_name(name)
    }
}

/// A deployment staged to be finalized at shutdown (`ostree admin deploy --stage`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StagedDeployment {
    /// The stateroot ("OS name") it belongs to.
    pub stateroot: String,
    /// The staged commit.
    pub commit: Checksum,
    /// Its deployment serial.
    pub deploy_serial: u32,
}

/// What `ostree admin status` knows about a sysroot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SysrootState {
    /// The sysroot's path.
    pub sysroot: PathBuf,
    /// The boot version (`boot/loader -> loader.N`) the deployments were read from.
    pub boot_version: u8,
    /// In `ostree admin status` order; the staged deployment is not among them.
    pub deployments: Vec<Deployment>,
    /// Whether the running system is booted from this sysroot.
    pub booted: bool,
    /// The deployment staged to be finalized at shutdown, if any.
    pub staged: Option<StagedDeployment>,
    /// libostree calls a sysroot physical when it is not a booted or chrooted deployment; only
    /// then are its remotes not read from `<sysroot>/etc/ostree/remotes.d`.
    pub physical: bool,
}

impl SysrootState {
    /// Reads the deployments of `sysroot`.
    pub fn load(sysroot: &Path, boot: &BootState) -> Result<Self, TargetError> {
        if !sysroot.join("ostree/deploy").is_dir() {
            return Err(TargetError::NotASysroot {
                path: sysroot.to_owned(),
            });
        }
        let boot_version = read_boot_version(sysroot)?;
        let mut entries = read_boot_entries(sysroot, boot_version)?;
        entries.sort_by(|a, b| compare_entry_versions(a.version.as_deref(), b.version.as_deref()));

        let booted = boot.ostree_booted() && same_file(sysroot, &boot.root);
        let mut deployments = Vec::with_capacity(entries.len());
        for (index, entry) in entries.into_iter().enumerate() {
            deployments.push(read_deployment(sysroot, index, entry)?);
        }
        if booted {
            mark_booted(sysroot, boot, &mut deployments)?;
        }
        let staged = if booted {
            read_staged(&boot.staged_deployment)?
        } else {
            None
        };
        let physical = !booted && !sysroot.join("sysroot").exists();
        Ok(Self {
            sysroot: sysroot.to_owned(),
            boot_version,
            deployments,
            booted,
            staged,
            physical,
        })
    }

    /// The deployment the running system is, if any.
    pub fn booted_deployment(&self) -> Option<&Deployment> {
        self.deployments.iter().find(|d| d.booted)
    }

    /// The deployment an update applies to: the booted one, else the default one.
    pub fn current_deployment(&self) -> Option<&Deployment> {
        self.booted_deployment()
            .or_else(|| self.deployments.first())
    }

    /// libostree's remotes config directory for this sysroot's repository.
    pub fn remotes_config_dir(&self) -> Option<PathBuf> {
        (!self.physical).then(|| self.sysroot.join("etc/ostree/remotes.d"))
    }
}

/// Splits a refspec (`remote:ref` or `ref`) as `ostree_parse_refspec` does.
pub fn parse_refspec(refspec: &str) -> Result<(Option<&str>, &str), String> {
    let (remote, ref_name) = match refspec.split_once(':') {
        Some((remote, ref_name)) => (Some(remote), ref_name),
        None => (None, refspec),
    };
    if let Some(remote) = remote {
        if !is_name_part(remote) {
            return Err(format!(
                "invalid remote name {remote:?} in refspec {refspec:?}"
            ));
        }
    }
    if ref_name.is_empty() || !ref_name.split('/').all(is_name_part) {
        return Err(format!("invalid ref {ref_name:?} in refspec {refspec:?}"));
    }
    Ok((remote, ref_name))
}

/// One component of a ref or a remote name: `[\w\d][-._\w\d]*`.
fn is_name_part(part: &str) -> bool {
    let mut chars = part.chars();
    chars
        .next()
        .is_some_and(|c| c.is_alphanumeric() || c == '_')
        && chars.all(|c| c.is_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

struct BootEntry {
    path: PathBuf,
    version: Option<String>,
    options: Option<String>,
}

fn read_boot_version(sysroot: &Path) -> Result<u8, TargetError> {
    let link = sysroot.join("boot/loader");
    let metadata = match std::fs::symlink_metadata(&link) {
        Ok(metadata) => metadata,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(error) => return Err(TargetError::io(&link, error)),
    };
    if !metadata.file_type().is_symlink() {
        return Err(TargetError::invalid(
            &link,
            "is not a symbolic link to loader.0 or loader.1",
        ));
    }
    let target = std::fs::read_link(&link).map_err(|error| TargetError::io(&link, error))?;
    match target.to_str() {
        Some("loader.0") => Ok(0),
        Some("loader.1") => Ok(1),
        _ => Err(TargetError::invalid(
            &link,
            format!(
                "points to {}, expected loader.0 or loader.1",
                target.display()
            ),
        )),
    }
}

fn read_boot_entries(sysroot: &Path, boot_version: u8) -> Result<Vec<BootEntry>, TargetError> {
    let dir = sysroot.join(format!("boot/loader.{boot_version}/entries"));
    let listing = match std::fs::read_dir(&dir) {
        Ok(listing) => listing,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(error) => return Err(TargetError::io(&dir, error)),
    };
    let mut entries = Vec::new();
    for item in listing {
        let item = item.map_err(|error| TargetError::io(&dir, error))?;
        let name = item.file_name();
        let Some(name) = name.to_str() else { continue };
        if !(name.starts_with("ostree-") && name.ends_with(".conf")) {
            continue;
        }
        let path = item.path();
        // libostree follows symlinks here and takes regular files only.
        if !std::fs::metadata(&path).is_ok_and(|m| m.is_file()) {
            continue;
        }
        if entries.len() == MAX_BOOT_ENTRIES {
            return Err(TargetError::invalid(
                &dir,
                format!("holds more than {MAX_BOOT_ENTRIES} bootloader entries"),
            ));
        }
        let text = read_text(&path, MAX_SMALL_FILE)?;
        let (version, options) = parse_boot_entry(&text);
        entries.push(BootEntry {
            path,
            version,
            options,
        });
    }
    Ok(entries)
}

/// The `version` and `options` lines of a BLS entry, split as libostree's bootconfig parser
/// does: a line starting with a letter, key and value separated by the first space or tab.
fn parse_boot_entry(text: &str) -> (Option<String>, Option<String>) {
    let mut version = None;
    let mut options = None;
    for line in text.split('\n') {
        if !line.starts_with(|c: char| c.is_ascii_alphabetic()) {
            continue;
        }
        let Some((key, value)) = line.split_once([' ', '\t']) else {
            continue;
        };
        match key {
            "version" => version = Some(value.to_owned()),
            "options" => options = Some(value.to_owned()),
            _ => {}
        }
    }
    (version, options)
}

/// libostree's order: entries with a version first, highest version first (by
/// `strverscmp`).
fn compare_entry_versions(a: Option<&str>, b: Option<&str>) -> Ordering {
    match (a, b) {
        (Some(a), Some(b)) => strverscmp(a.as_bytes(), b.as_bytes()).reverse(),
        (Some(_), None) => Ordering::Less,
        (None, Some(_)) => Ordering::Greater,
        (None, None) => Ordering::Equal,
    }
}

/// glibc's `strverscmp`: digit runs compare as numbers, runs with leading zeros as
/// fractional parts.
fn strverscmp(a: &[u8], b: &[u8]) -> Ordering {
    const S_N: usize = 0;
    const S_I: usize = 3;
    const S_F: usize = 6;
    const S_Z: usize = 9;
    const CMP: i8 = 2;
    const LEN: i8 = 3;
    const NEXT_STATE: [usize; 12] = [
        S_N, S_I, S_Z, // S_N
        S_N, S_I, S_I, // S_I
        S_N, S_F, S_F, // S_F
        S_N, S_F, S_Z, // S_Z
    ];
    const RESULT_TYPE: [i8; 36] = [
        CMP, CMP, CMP, CMP, LEN, CMP, CMP, CMP, CMP, // S_N
        CMP, -1, -1, 1, LEN, LEN, 1, LEN, LEN, // S_I
        CMP, CMP, CMP, CMP, CMP, CMP, CMP, CMP, CMP, // S_F
        CMP, 1, 1, -1, CMP, CMP, -1, CMP, CMP, // S_Z
    ];
    let at = |s: &[u8], i: usize| s.get(i).copied().unwrap_or(0);
    let class = |c: u8| usize::from(c == b'0') + usize::from(c.is_ascii_digit());

    let mut i = 0;
    let mut c1 = at(a, 0);
    let mut c2 = at(b, 0);
    let mut state = S_N + class(c1);
    while c1 == c2 {
        if c1 == 0 {
            return Ordering::Equal;
        }
        state = NEXT_STATE[state];
        i += 1;
        c1 = at(a, i);
        c2 = at(b, i);
        state += class(c1);
    }
    let diff = i32::from(c1) - i32::from(c2);
    match RESULT_TYPE[state * 3 + class(c2)] {
        CMP => diff.cmp(&0),
        LEN => {
            // Both digit runs continue after the first difference: the longer one is larger.
            let (mut p1, mut p2) = (i + 1, i + 1);
            loop {
                let digit1 = at(a, p1).is_ascii_digit();
                p1 += 1;
                if !digit1 {
                    break;
                }
                let digit2 = at(b, p2).is_ascii_digit();
                p2 += 1;
                if !digit2 {
                    return Ordering::Greater;
                }
            }
            if at(b, p2).is_ascii_digit() {
                Ordering::Less
            } else {
                diff.cmp(&0)
            }
        }
        other => other.cmp(&0),
    }
}

/// `/ostree/boot.N/OS/BOOTCSUM/SERIAL`, the form libostree writes and requires.
struct BootLink<'a> {
    stateroot: &'a str,
    boot_checksum: &'a str,
    boot_serial: u32,
}

fn parse_boot_link(link: &str) -> Option<BootLink<'_>> {
    let rest = link.strip_prefix("/ostree/boot.")?;
    let mut parts = rest.split('/');
    let version = parts.next()?;
    let stateroot = parts.next()?;
    let boot_checksum = parts.next()?;
    let serial = parts.next()?;
    if parts.next().is_some()
        || !matches!(version, "0" | "1")
        || stateroot.is_empty()
        || boot_checksum.is_empty()
        || serial.is_empty()
        || !serial.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    Some(BootLink {
        stateroot,
        boot_checksum,
        boot_serial: serial.parse().ok()?,
    })
}

/// `<checksum>.<serial>`, the name of a deployment directory.
fn parse_deploy_name(name: &str) -> Option<(Checksum, u32)> {
    let (checksum, serial) = name.split_once('.')?;
    if serial.is_empty() || !serial.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((Checksum::from_hex(checksum).ok()?, serial.parse().ok()?))
}

/// Kernel arguments split at spaces outside double quotes, as libostree's karg parser does.
pub(crate) fn split_kernel_args(line: &str) -> Vec<String> {
    let mut args = Vec::new();
    let mut current = String::new();
    let mut quoted = false;
    for c in line.chars() {
        match c {
            '"' => {
                quoted = !quoted;
                current.push(c);
            }
            c if c.is_ascii_whitespace() && !quoted => {
                if !current.is_empty() {
                    args.push(std::mem::take(&mut current));
                }
            }
            c => current.push(c),
        }
    }
    if !current.is_empty() {
        args.push(current);
    }
    args
}

fn ostree_arg(args: &[String]) -> Option<&str> {
    args.iter().find_map(|arg| arg.strip_prefix("ostree="))
}

fn read_deployment(
    sysroot: &Path,
    index: usize,
    entry: BootEntry,
) -> Result<Deployment, TargetError> {
    let args = split_kernel_args(entry.options.as_deref().unwrap_or_default());
    let Some(link_text) = ostree_arg(&args) else {
        return Err(TargetError::invalid(
            &entry.path,
            "has no ostree= kernel argument: it is not an entry libostree wrote",
        ));
    };
    let Some(link) = parse_boot_link(link_text) else {
        return Err(TargetError::invalid(
            &entry.path,
            format!(
                "has ostree={link_text}, expected ostree=/ostree/boot.N/OSNAME/BOOTCSUM/SERIAL"
            ),
        ));
    };
    let link_path = sysroot.join(link_text.trim_start_matches('/'));
    let target =
        std::fs::read_link(&link_path).map_err(|error| TargetError::io(&link_path, error))?;
    let deploy_name = target
        .file_name()
        .and_then(|name| name.to_str())
        .unwrap_or_default();
    let Some((commit, deploy_serial)) = parse_deploy_name(deploy_name) else {
        return Err(TargetError::invalid(
            &link_path,
            format!(
                "points to {}, which is not a deployment named CHECKSUM.SERIAL",
                target.display()
            ),
        ));
    };
    let path = sysroot
        .join("ostree/deploy")
        .join(link.stateroot)
        .join("deploy")
        .join(deploy_name);
    if !path.is_dir() {
        return Err(TargetError::invalid(
            &entry.path,
            format!("leads to {}, which does not exist", path.display()),
        ));
    }
    let mut deployment = Deployment {
        index,
        stateroot: link.stateroot.to_owned(),
        commit,
        deploy_serial,
        boot_checksum: link.boot_checksum.to_owned(),
        boot_serial: link.boot_serial,
        booted: false,
        path,
        refspec: None,
        kernel_args: args
            .iter()
            .filter(|arg| !arg.starts_with("ostree="))
            .cloned()
            .collect(),
        boot_entry: entry.path,
    };
    deployment.refspec = read_origin_refspec(&deployment.origin_path())?;
    Ok(deployment)
}

/// The refspec of an origin file (rpm-ostree's `baserefspec` when there is no `refspec`).
/// A missing origin file means no refspec, as in libostree.
fn read_origin_refspec(path: &Path) -> Result<Option<String>, TargetError> {
    let text = match read_text(path, crate::repo::MAX_CONFIG_SIZE as u64) {
        Ok(text) => text,
        Err(TargetError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(other) => return Err(other),
    };
    let origin = KeyFile::parse(&text).map_err(|detail| TargetError::invalid(path, detail))?;
    for key in ["refspec", "baserefspec"] {
        if let Some(refspec) = origin
            .get("origin", key)
            .map_err(|detail| TargetError::invalid(path, detail))?
        {
            return Ok(Some(refspec));
        }
    }
    Ok(None)
}

fn same_file(a: &Path, b: &Path) -> bool {
    match (std::fs::metadata(a), std::fs::metadata(b)) {
        (Ok(a), Ok(b)) => a.dev() == b.dev() && a.ino() == b.ino(),
        _ => false,
    }
}

/// Finds the booted deployment: the one that is the running root (libostree's test), else
/// the one the kernel command line's `ostree=` argument names.
fn mark_booted(
    sysroot: &Path,
    boot: &BootState,
    deployments: &mut [Deployment],
) -> Result<(), TargetError> {
    let by_root = deployments
        .iter()
        .position(|d| same_file(&d.path, &boot.root));
    let found = match by_root {
        Some(position) => Some(position),
        None => booted_from_cmdline(sysroot, boot, deployments)?,
    };
    match found {
        Some(position) => {
            deployments[position].booted = true;
            Ok(())
        }
        None => Err(TargetError::BootedDeploymentMissing {
            sysroot: sysroot.to_owned(),
            marker: boot.ostree_booted.clone(),
        }),
    }
}

fn booted_from_cmdline(
    sysroot: &Path,
    boot: &BootState,
    deployments: &[Deployment],
) -> Result<Option<usize>, TargetError> {
    let cmdline = read_text(&boot.kernel_cmdline, MAX_SMALL_FILE)?;
    let args = split_kernel_args(&cmdline);
    let Some(link_text) = ostree_arg(&args) else {
        return Ok(None);
    };
    let Some(link) = parse_boot_link(link_text) else {
        return Err(TargetError::invalid(
            &boot.kernel_cmdline,
            format!(
                "has ostree={link_text}, expected ostree=/ostree/boot.N/OSNAME/BOOTCSUM/SERIAL"
            ),
        ));
    };
    // The link names the deployment directly while its boot version is current; after a
    // bootloader swap only the boot checksum and serial still identify it.
    let link_path = sysroot.join(link_text.trim_start_matches('/'));
    if let Ok(target) = std::fs::read_link(&link_path) {
        let name = target
            .file_name()
            .and_then(|n| n.to_str())
            .unwrap_or_default();
        if let Some((commit, serial)) = parse_deploy_name(name) {
            return Ok(deployments.iter().position(|d| {
                d.stateroot == link.stateroot && d.commit == commit && d.deploy_serial == serial
            }));
        }
    }
    Ok(deployments.iter().position(|d| {
        d.stateroot == link.stateroot
            && d.boot_checksum == link.boot_checksum
            && d.boot_serial == link.boot_serial
    }))
}

/// `/run/ostree/staged-deployment`: an `a{sv}` whose `target` holds the deployment's `name`
/// (`CHECKSUM.SERIAL`) and `osname`.
fn read_staged(path: &Path) -> Result<Option<StagedDeployment>, TargetError> {
    let bytes = match read_limited(path, MAX_SMALL_FILE) {
        Ok(bytes) => bytes,
        Err(TargetError::Io { error, .. }) if error.kind() == std::io::ErrorKind::NotFound => {
            return Ok(None)
        }
        Err(other) => return Err(other),
    };
    let aligned = copy_to_align(&bytes);
    let state = gv!("a{sv}").cast(aligned.as_ref());
    let target = state.iter().find_map(|entry| {
        let (key, value) = entry.to_tuple();
        (key.to_str() == "target")
            .then(|| value.get(gv!("a{sv}")))
            .flatten()
    });
    let Some(target) = target else {
        return Ok(None);
    };
    let text = |wanted: &str| {
        target.iter().find_map(|entry| {
            let (key, value) = entry.to_tuple();
            (key.to_str() == wanted)
                .then(|| value.get(gv!("s")).map(|s| s.to_str().to_owned()))
                .flatten()
        })
    };
    let (Some(name), Some(stateroot)) = (text("name"), text("osname")) else {
        return Err(TargetError::invalid(
            path,
            "names no staged deployment (target without name or osname)",
        ));
    };
    let Some((commit, deploy_serial)) = parse_deploy_name(&name) else {
        return Err(TargetError::invalid(
            path,
            format!("names {name:?}, which is not CHECKSUM.SERIAL"),
        ));
    };
    Ok(Some(StagedDeployment {
        stateroot,
        commit,
        deploy_serial,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn strverscmp_matches_glibc() {
        use Ordering::*;
        let cases: &[(&str, &str, Ordering)] = &[
            ("1", "2", Less),
            ("10", "9", Greater),
            ("2", "10", Less),
            ("a", "a", Equal),
            ("000", "00", Less),
            ("00", "01", Less),
            ("01", "010", Less),
            ("010", "09", Less),
            ("09", "0", Less),
            ("0", "1", Less),
            ("1.9", "1.10", Less),
            ("item#99", "item#100", Less),
            ("alpha1", "alpha001", Greater),
        ];
        for (a, b, expected) in cases {
            assert_eq!(
                strverscmp(a.as_bytes(), b.as_bytes()),
                *expected,
                "{a} vs {b}"
            );
            assert_eq!(
                strverscmp(b.as_bytes(), a.as_bytes()),
                expected.reverse(),
                "{b} vs {a}"
            );
        }
    }

    #[test]
    fn entries_sort_highest_version_first() {
        let mut versions = vec![Some("1"), None, Some("10"), Some("2")];
        versions.sort_by(|a, b| compare_entry_versions(*a, *b));
        assert_eq!(versions, [Some("10"), Some("2"), Some("1"), None]);
    }

    #[test]
    fn parses_refspecs() {
        assert_eq!(
            parse_refspec("exampleos:exampleos/x86_64/stable"),
            Ok((Some("exampleos"), "exampleos/x86_64/stable"))
        );
        assert_eq!(parse_refspec("os/stable"), Ok((None, "os/stable")));
        assert!(parse_refspec("remote:").is_err());
        assert!(parse_refspec("os//stable").is_err());
        assert!(parse_refspec(":ref").is_err());
        assert!(parse_refspec("-bad:ref").is_err());
    }

    #[test]
    fn splits_kernel_args_outside_quotes() {
        assert_eq!(
            split_kernel_args("root=LABEL=ROOT  quiet foo=\"a b\" ostree=/ostree/boot.1/os/x/0\n"),
            [
                "root=LABEL=ROOT",
                "quiet",
                "foo=\"a b\"",
                "ostree=/ostree/boot.1/os/x/0"
            ]
        );
    }

    #[test]
    fn parses_boot_links() {
        let link = parse_boot_link("/ostree/boot.1/exampleos/abc/0").expect("valid");
        assert_eq!(
            (link.stateroot, link.boot_checksum, link.boot_serial),
            ("exampleos", "abc", 0)
        );
        assert!(parse_boot_link("/ostree/boot.2/os/abc/0").is_none());
        assert!(parse_boot_link("/ostree/boot.0/os/abc/x").is_none());
        assert!(parse_boot_link("/ostree/boot.0/os/abc/0/extra").is_none());
    }
}
