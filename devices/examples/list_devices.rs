//! Print all hosts and devices (what `--list-devices` shows).
fn main() -> std::io::Result<()> {
    let mut out = std::io::stdout().lock();
    patchcord_devices::list_devices(&mut out, patchcord_devices::VirtualOptions::default())?;
    println!("has_sound_card: {}", patchcord_devices::has_sound_card());
    Ok(())
}
