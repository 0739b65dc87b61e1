//! Resolve a device like the binaries do: `open [HOST] [NAME] [in|out]`.
use patchcord_devices::{jack_host::JackOptions, open_device, Direction, HostChoice, VirtualOptions};

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let host = match args.first().map(|s| s.parse::<HostChoice>()) {
        Some(Ok(h)) => h,
        Some(Err(e)) => {
            eprintln!("error: {e}");
            std::process::exit(2);
        }
        None => HostChoice::Auto,
    };
    let name = args.get(1).map(String::as_str).filter(|s| !s.is_empty());
    let dir = match args.get(2).map(String::as_str) {
        Some("out") => Direction::Output,
        _ => Direction::Input,
    };
    match open_device(
        host,
        name,
        dir,
        VirtualOptions::default(),
        &JackOptions::default(),
    ) {
        Ok(d) => println!(
            "opened '{}' on {} (virtual: {})",
            d.device_name, d.host_name, d.is_virtual
        ),
        Err(e) => {
            eprintln!("error: {e}");
            std::process::exit(1);
        }
    }
}
