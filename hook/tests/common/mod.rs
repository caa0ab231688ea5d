//! Shared pieces of the hook's tests: fixture drives made with the real `gpg` and `ostree`,
//! running `ferry-hook` with its paths moved into a temporary directory, and guards that undo
//! loop devices, mounts and udev state even when a test fails.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_schema::DriveRecord;

pub const COLLECTION: &str = "org.example.Os";
pub const REF: &str = "os/x86_64/stable";

/// Runs a command and returns its stdout, failing the test with its stderr otherwise.
pub fn run(command: &mut Command) -> String {
    let output = command
        .output()
        .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"));
    assert!(
        output.status.success(),
        "{command:?} failed ({}):\n{}\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

pub fn assert_root() {
    assert!(
        rustix::process::geteuid().is_root(),
        "this test attaches loop devices and mounts filesystems: run it as root"
    );
}

/// A throwaway GnuPG home with one ed25519 signing key. Its agent is stopped on drop.
pub struct GpgKey {
    pub home: PathBuf,
    pub key_id: String,
}

impl GpgKey {
    pub fn new(dir: &Path) -> Self {
        let home = dir.join("gnupg");
        std::fs::create_dir_all(&home).unwrap();
        std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700))
            .unwrap();
        run(Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args(["--batch", "--passphrase", "", "--quick-gen-key"])
            .args(["Ferry Test <test@example.org>", "ed25519", "sign", "never"]));
        let listing = run(Command::new("gpg")
            .env("GNUPGHOME", &home)
            .args(["--list-keys", "--with-colons"]));
        let key_id = listing
            .lines()
            .find(|l| l.starts_with("fpr:"))
            .and_then(|l| l.split(':').nth(9))
            .expect("gpg printed a fingerprint")
            .to_owned();
        Self { home, key_id }
    }
}

impl Drop for GpgKey {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.home)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// A signed archive repository with one commit on [`REF`] in [`COLLECTION`].
pub fn signed_repo(dir: &Path, key: &GpgKey) -> PathBuf {
    let repo = dir.join("server-repo");
    let tree = dir.join("tree");
    std::fs::create_dir_all(tree.join("usr/bin")).unwrap();
    std::fs::write(tree.join("usr/hello.txt"), "hello\n").unwrap();
    std::fs::write(tree.join("usr/bin/hi"), "#!/bin/sh\necho hi\n").unwrap();
    run(Command::new("ostree")
        .arg("init")
        .arg("--mode=archive")
        .arg(format!("--repo={}", repo.display()))
        .arg(format!("--collection-id={COLLECTION}")));
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args([
            "commit",
            "-b",
            REF,
            "-s",
            "v1",
            "--add-metadata-string=version=1.0",
        ])
        .arg(format!("--gpg-sign={}", key.key_id))
        .arg(format!("--gpg-homedir={}", key.home.display()))
        .arg(&tree));
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["summary", "-u"])
        .arg(format!("--gpg-sign={}", key.key_id))
        .arg(format!("--gpg-homedir={}", key.home.display())));
    repo
}

/// `ostree create-usb` of the repository's ref onto `drive`, optionally into a non-default
/// destination (which ostree links from `.ostree/repos.d/`).
pub fn create_usb(repo: &Path, drive: &Path, destination: Option<&str>) {
    std::fs::create_dir_all(drive).unwrap();
    let mut command = Command::new("ostree");
    command
        .arg(format!("--repo={}", repo.display()))
        .arg("create-usb");
    if let Some(destination) = destination {
        command.arg(format!("--destination-repo={destination}"));
    }
    run(command.arg(drive).args([COLLECTION, REF]));
}

/// The commit the repository's ref points at.
pub fn ref_commit(repo: &Path) -> String {
    run(Command::new("ostree")
        .arg(format!("--repo={}", repo.display()))
        .args(["rev-parse", REF]))
    .trim()
    .to_owned()
}

/// The hook's runtime paths and policy, all inside one temporary directory.
pub struct HookEnv {
    pub dir: tempfile::TempDir,
    pub run_dir: PathBuf,
    pub sideload_dir: PathBuf,
    pub config: PathBuf,
}

impl HookEnv {
    pub fn new(policy: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let run_dir = dir.path().join("run-ferry");
        let sideload_dir = dir.path().join("sideload-repos");
        let config = dir.path().join("ferry.conf");
        std::fs::write(&config, policy).unwrap();
        let env = Self {
            dir,
            run_dir,
            sideload_dir,
            config,
        };
        // A hook under test never restarts the machine: its restart command only leaves a mark.
        let script = env.reboot_command();
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\necho \"$@\" >> '{}'\n",
                env.reboot_marker().display()
            ),
        )
        .unwrap();
        std::fs::set_permissions(&script, std::os::unix::fs::PermissionsExt::from_mode(0o755))
            .unwrap();
        env
    }

    /// Runs the hook with `--mount` on a new empty drive directory `name`, with the variables
    /// `vars` on top; returns the drive's canonical path.
    pub fn run_on_new_drive(&self, name: &str, vars: &[(&str, &str)]) -> (Output, PathBuf) {
        let drive = self.dir.path().join(name);
        std::fs::create_dir_all(&drive).unwrap();
        let mut command = self.command();
        command.envs(vars.iter().copied());
        let output = command.arg("--mount").arg(&drive).output().unwrap();
        (output, std::fs::canonicalize(&drive).unwrap())
    }

    /// The restart command the hook is given (FERRY_REBOOT_COMMAND).
    pub fn reboot_command(&self) -> PathBuf {
        self.dir.path().join("fake-reboot")
    }

    /// Written by [`HookEnv::reboot_command`]: one line per restart the hook asked for.
    pub fn reboot_marker(&self) -> PathBuf {
        self.dir.path().join("rebooted")
    }

    /// How many times the hook restarted the machine.
    pub fn reboots(&self) -> usize {
        std::fs::read_to_string(self.reboot_marker())
            .map(|text| text.lines().count())
            .unwrap_or(0)
    }

    pub fn command(&self) -> Command {
        let mut command = Command::new(env!("CARGO_BIN_EXE_ferry-hook"));
        command
            .env("FERRY_RUN_DIR", &self.run_dir)
            .env("FERRY_SIDELOAD_DIR", &self.sideload_dir)
            .env("FERRY_CONFIG", &self.config)
            .env("FERRY_REBOOT_COMMAND", self.reboot_command())
            .env("FERRY_LOG", "debug")
            .env_remove("FERRY_ACCEPT_FIXED_DRIVES")
            .env_remove("OSTREE_SYSROOT")
            .env_remove("JOURNAL_STREAM");
        command
    }

    /// Runs the hook to completion.
    pub fn hook<I, S>(&self, args: I) -> Output
    where
        I: IntoIterator<Item = S>,
        S: AsRef<OsStr>,
    {
        let mut command = self.command();
        command.args(args);
        command
            .output()
            .unwrap_or_else(|e| panic!("cannot run {command:?}: {e}"))
    }

    pub fn records(&self) -> Vec<DriveRecord> {
        let dir = self.run_dir.join("drives");
        let Ok(entries) = std::fs::read_dir(&dir) else {
            return Vec::new();
        };
        let mut records: Vec<DriveRecord> = entries
            .map(|e| e.unwrap().path())
            .filter(|p| p.extension().is_some_and(|e| e == "json"))
            .map(|p| {
                let text = std::fs::read_to_string(&p).unwrap();
                serde_json::from_str(&text).unwrap_or_else(|e| {
                    panic!("{} is not a drive record: {e}\n{text}", p.display())
                })
            })
            .collect();
        records.sort_by(|a, b| a.id.cmp(&b.id));
        records
    }

    /// Names in the sideload directory with their link targets.
    pub fn sideload_links(&self) -> Vec<(String, PathBuf)> {
        let Ok(entries) = std::fs::read_dir(&self.sideload_dir) else {
            return Vec::new();
        };
        let mut links: Vec<(String, PathBuf)> = entries
            .map(|e| e.unwrap())
            .map(|e| {
                let target = std::fs::read_link(e.path()).unwrap_or_default();
                (e.file_name().to_string_lossy().into_owned(), target)
            })
            .collect();
        links.sort();
        links
    }
}

pub fn output_text(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// A hook running in the background, its stderr read line by line.
pub struct Background {
    child: Child,
    lines: mpsc::Receiver<String>,
    pub seen: Vec<String>,
}

impl Background {
    pub fn spawn(mut command: Command) -> Self {
        let mut child = command
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start {command:?}: {e}"));
        let stderr = child.stderr.take().unwrap();
        let (send, lines) = mpsc::channel();
        std::thread::spawn(move || {
            for line in BufReader::new(stderr).lines().map_while(Result::ok) {
                if send.send(line).is_err() {
                    break;
                }
            }
        });
        Self {
            child,
            lines,
            seen: Vec::new(),
        }
    }

    /// Waits for a stderr line containing `needle`.
    pub fn wait_for_line(&mut self, needle: &str, limit: Duration) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    self.seen.push(line);
                    if found {
                        return;
                    }
                }
                Err(_) => panic!(
                    "no line with {needle:?} within {limit:?}; the hook printed:\n{}",
                    self.seen.join("\n")
                ),
            }
        }
    }

    /// Waits for the process to exit and returns whether it succeeded.
    pub fn wait(mut self, limit: Duration) -> (bool, String) {
        let deadline = Instant::now() + limit;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self
                .lines
                .recv_timeout(left.min(Duration::from_millis(200)))
            {
                Ok(line) => self.seen.push(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => {
                    let status = self.child.wait().unwrap();
                    return (status.success(), self.seen.join("\n"));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {
                    if Instant::now() >= deadline {
                        let _ = self.child.kill();
                        panic!(
                            "the hook did not finish within {limit:?}:\n{}",
                            self.seen.join("\n")
                        );
                    }
                }
            }
        }
    }
}

impl Drop for Background {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A loop device over an image file, detached (and unmounted everywhere) on drop.
pub struct LoopDevice {
    pub node: PathBuf,
}

impl LoopDevice {
    pub fn attach(image: &Path) -> Self {
        let node = run(Command::new("losetup")
            .args(["--find", "--show"])
            .arg(image));
        Self {
            node: PathBuf::from(node.trim()),
        }
    }

    pub fn name(&self) -> String {
        self.node
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned()
    }
}

impl Drop for LoopDevice {
    fn drop(&mut self) {
        // Anything still mounted from it (a failed test, the hook's own mount).
        if let Ok(table) = std::fs::read_to_string("/proc/self/mountinfo") {
            for line in table.lines().rev() {
                if line.contains(&format!(" {} ", self.node.display())) {
                    if let Some(point) = line.split(' ').nth(4) {
                        let _ = Command::new("umount").arg("-l").arg(point).status();
                    }
                }
            }
        }
        let _ = Command::new("losetup").arg("-d").arg(&self.node).status();
    }
}

/// A mount made by a test, undone on drop.
pub struct Mounted {
    pub point: PathBuf,
}

impl Mounted {
    pub fn mount(device: &Path, point: &Path, options: &str) -> Self {
        std::fs::create_dir_all(point).unwrap();
        run(Command::new("mount")
            .args(["-o", options])
            .arg(device)
            .arg(point));
        Self {
            point: point.to_path_buf(),
        }
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.point).status();
    }
}

/// A rules file placed in udev's runtime rules directory, removed on drop, plus the udev
/// database entries `udevadm test` writes for the devices it was tried on.
pub struct RuntimeUdevRule {
    path: PathBuf,
    tested: Vec<PathBuf>,
}

impl RuntimeUdevRule {
    /// `name` must sort after `60-persistent-storage.rules`, as the installed rule does.
    pub fn install(source: &Path, name: &str) -> Self {
        let dir = Path::new("/run/udev/rules.d");
        std::fs::create_dir_all(dir).unwrap();
        let path = dir.join(name);
        std::fs::copy(source, &path).unwrap();
        Self {
            path,
            tested: Vec::new(),
        }
    }

    /// Runs the rules for an `add` of `device` as udevd would, and returns the properties
    /// udev ends up with. This also fills udev's database, so libudev sees the filesystem.
    pub fn test_add(&mut self, device: &LoopDevice) -> Vec<(String, String)> {
        let syspath = PathBuf::from("/sys/class/block").join(device.name());
        self.tested.push(syspath.clone());
        let output = Command::new("udevadm")
            .args(["test", "--action=add"])
            .arg(&syspath)
            .output()
            .unwrap();
        let text = String::from_utf8_lossy(&output.stdout).into_owned()
            + &String::from_utf8_lossy(&output.stderr);
        assert!(output.status.success(), "udevadm test failed:\n{text}");
        assert!(
            text.contains(&format!("Reading rules file: {}", self.path.display())),
            "udevadm did not read {}:\n{text}",
            self.path.display()
        );
        assert!(
            !text.contains(&format!("{}:", self.path.display())),
            "udevadm complained about {}:\n{text}",
            self.path.display()
        );
        text.lines()
            .filter_map(|l| l.split_once('='))
            .filter(|(k, _)| k.chars().all(|c| c.is_ascii_uppercase() || c == '_'))
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }
}

impl Drop for RuntimeUdevRule {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.path);
        for syspath in &self.tested {
            let _ = Command::new("udevadm")
                .args(["test", "--action=remove"])
                .arg(syspath)
                .output();
        }
    }
}

/// The repository's rules file, as `make install` ships it.
pub fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

pub fn udev_rule_source() -> PathBuf {
    repo_root().join("udev-rules/90-ferry.rules")
}
