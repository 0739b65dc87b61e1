//! ALSA's library messages, silenced while patchcord enumerates devices.
//!
//! Enumerating ALSA opens every PCM the configuration names, and alsa-lib prints a line to
//! stderr for each one that cannot open (`ALSA lib confmisc.c:165:(snd_config_get_card)
//! Cannot get card index for 0` for each plugin on a machine without a sound card, more
//! once PulseAudio's ALSA plugin is installed). Those lines say nothing the listing does
//! not say better ("cannot query configurations"), so while patchcord enumerates, the
//! calling thread gets a thread-local error handler that drops them
//! (`snd_lib_error_set_local`); the previous handler comes back afterwards, so messages of
//! a running stream still reach stderr.

use alsa_sys::{__va_list_tag, snd_lib_error_set_local};
use std::ffi::{c_char, c_int};

/// Run `f` with alsa-lib's messages on this thread dropped.
pub(crate) fn quietly<T>(f: impl FnOnce() -> T) -> T {
    // SAFETY: sets a thread-local function pointer in alsa-lib; `ignore` has the signature
    // alsa-lib calls it with and touches none of its arguments.
    let previous = unsafe { snd_lib_error_set_local(Some(ignore)) };
    let result = f();
    // SAFETY: puts back what was there before (none, or an outer `quietly`'s handler).
    unsafe { snd_lib_error_set_local(previous) };
    result
}

unsafe extern "C" fn ignore(
    _file: *const c_char,
    _line: c_int,
    _function: *const c_char,
    _err: c_int,
    _fmt: *const c_char,
    _arg: *mut __va_list_tag,
) {
}
