//! Backend parity: `ad parity` (PatchCore, PaDiM, CFlow and the score student fitted and run on
//! a reference device and on a candidate device, compared against stated tolerances;
//! `anomaly_detection::parity`).
//!
//! ```text
//! cargo run --release --features wgpu --example backend_parity -- --device wgpu-cpu
//! ```
//! `wgpu-cpu` is a software Vulkan (Mesa's lavapipe: `apt-get install mesa-vulkan-drivers`);
//! `wgpu` takes wgpu's choice of adapter (a GPU first). Exit status 1 when a tolerance is
//! exceeded. `--help` lists every option.

fn main() -> std::process::ExitCode {
    let mut args: Vec<std::ffi::OsString> = vec!["ad".into(), "parity".into()];
    args.extend(std::env::args_os().skip(1));
    ad_cli::main_from(args)
}
