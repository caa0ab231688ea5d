//! A broken policy file: the error names the file and line, and the hook behaves as with
//! `on-insert = notify` (it records the drive and installs nothing).

mod common;

use std::path::Path;

use common::*;

#[test]
fn a_bad_line_is_named_and_the_hook_falls_back_to_notify() {
    let env = HookEnv::new(
        "# kiosk\n[policy]\non-insert = install\nreboot-after-os-update = sometimes\n",
    );
    let (output, _) = env.run_on_new_drive("STICK", &[]);
    assert!(output.status.success(), "{}", output_text(&output));
    let stderr = String::from_utf8_lossy(&output.stderr);
    let expected = format!(
        "{}:4: reboot-after-os-update: 'sometimes'",
        env.config.display()
    );
    assert!(stderr.contains(&expected), "{stderr}");
    assert!(stderr.contains("on-insert = notify"), "{stderr}");
    let records = env.records();
    assert_eq!(records.len(), 1);
    // Were the broken policy applied, the record would carry the install.
    assert!(
        records[0].install.is_none(),
        "the install ran despite the broken policy"
    );
}

#[test]
fn a_missing_policy_file_means_the_defaults() {
    let env = HookEnv::new("");
    std::fs::remove_file(&env.config).unwrap();
    let drive = env.dir.path().join("STICK");
    std::fs::create_dir_all(&drive).unwrap();
    let output = env.hook([Path::new("--mount"), &drive]);
    assert!(output.status.success(), "{}", output_text(&output));
    assert!(!String::from_utf8_lossy(&output.stderr).contains("ERROR"));
    assert_eq!(env.records().len(), 1);
}
