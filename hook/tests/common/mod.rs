//! Shared pieces of the hook's tests: a signed OS repository from the `ferry-tests` builders,
//! running `ferry-hook` with its paths moved into a temporary directory, a hook running in the
//! background, and a guard that undoes udev state even when a test fails. Loop devices and
//! mounts are ferry-tests' `loopdev` guards.

#![allow(dead_code)]

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use ferry_schema::DriveRecord;
use ferry_tests::gpg::GpgKey;
use ferry_tests::loopdev::LoopDevice;
use ferry_tests::ostree::UsbDrive;
use ferry_tests::sysroot::{OsRepo, OS_COLLECTION_ID, OS_REF};

/// A signed OS repository (ferry-tests' [`OsRepo`] under `dir`) with version 1.0 committed
/// and a signed summary; its key lives in `dir/gnupg`.
pub fn signed_os_repo(dir: &Path) -> OsRepo {
    let key = GpgKey::generate(&dir.join("gnupg"), "Ferry Test <test@example.org>").unwrap();
    let os = OsRepo::create(dir, &key).unwrap();
    os.commit_version("1.0").unwrap();
    os
}

/// `ostree create-usb --destination-repo=DESTINATION` of the OS ref onto `drive`: ostree links
/// the repository from `.ostree/repos.d/`.
pub fn create_usb_at(os: &OsRepo, drive: &Path, destination: &str) -> UsbDrive {
    os.repo
        .create_usb_repos_d(drive, destination, &[(OS_COLLECTION_ID, OS_REF)])
        .unwrap()
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
        let syspath = PathBuf::from("/sys/class/block").join(device.kernel_name());
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
