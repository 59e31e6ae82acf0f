//! MJPEG frames decoded by region (the C shim over libjpeg-turbo): any bytes give a size and a
//! decoded rectangle inside the frame, or an error.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if data.len() < 4 {
        return;
    }
    let (rect, jpeg) = data.split_at(4);
    let Ok((w, h)) = aullm::frame::jpeg::dims(jpeg) else {
        return;
    };
    if w as usize * h as usize > 4 << 20 {
        return;
    }
    let r = [
        rect[0] as u32 * w / 255,
        rect[1] as u32 * h / 255,
        rect[2] as u32 * w / 255,
        rect[3] as u32 * h / 255,
    ];
    let mut out = vec![0u8; w as usize * h as usize];
    if let Ok(got) = aullm::frame::jpeg::decode_gray(jpeg, w, h, r, &mut out) {
        assert!(
            got[0] <= got[2] && got[2] <= w && got[1] <= got[3] && got[3] <= h,
            "{got:?}"
        );
    }
});
