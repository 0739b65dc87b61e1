#![no_main]
libfuzzer_sys::fuzz_target!(|data: &[u8]| patchcord_common::fuzz::srtp_unprotect(data));
