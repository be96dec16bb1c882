//! A process killed while saving a model never leaves a truncated file under the model's name:
//! the file is either absent, the previous complete model, or the new complete model.

use std::process::Command;
use std::time::Duration;

use ad_core::model_file::{decode, encode, write_atomic};

const MAGIC: &[u8; 8] = b"ADATOMIC";
const CHILD: &str = "AD_ATOMIC_SAVE_CHILD";

#[test]
fn killed_writer_never_leaves_a_truncated_file() {
    if let Ok(target) = std::env::var(CHILD) {
        // The child: save ever-changing 48 MiB models until killed.
        for round in 0u8.. {
            let payload = vec![round; 48 << 20];
            write_atomic(target.as_ref(), &encode(MAGIC, 1, b"{}", &payload)).unwrap();
        }
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("model.bin");
    let exe = std::env::current_exe().unwrap();
    let mut checked = 0;
    for delay_ms in [30u64, 90, 170, 260, 400, 650] {
        let mut child = Command::new(&exe)
            .args(["--exact", "killed_writer_never_leaves_a_truncated_file"])
            .env(CHILD, &target)
            .spawn()
            .unwrap();
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL: no destructor, no flush.
        child.wait().unwrap();
        if let Ok(bytes) = std::fs::read(&target) {
            let (_, payload) = decode(&bytes, MAGIC, 1, "test")
                .unwrap_or_else(|e| panic!("killed after {delay_ms} ms: {e}"));
            assert_eq!(payload.len(), 48 << 20);
            assert!(payload.iter().all(|&b| b == payload[0]));
            checked += 1;
        }
    }
    println!("{checked} of 6 kills left a complete model, the others none");
}
