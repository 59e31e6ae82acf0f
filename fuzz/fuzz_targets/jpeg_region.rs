//! MJPEG frames decoded by region: any bytes give a size and a decoded rectangle inside the frame,
//! or an error; and aullm's baseline decoder (`frame::baseline`), where it takes a frame, writes
//! exactly libjpeg's pixels and rectangle (differential: libjpeg-turbo through the C shim).
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
    let fast = aullm::frame::jpeg::decode_gray(jpeg, w, h, r, &mut out);
    if let Ok(got) = &fast {
        assert!(
            got[0] <= got[2] && got[2] <= w && got[1] <= got[3] && got[3] <= h,
            "{got:?}"
        );
    }
    if r[0] < r[2] && r[1] < r[3] {
        let mut reference = vec![0u8; w as usize * h as usize];
        let slow = aullm::frame::jpeg::libjpeg_region(jpeg, w, h, 1, r, &mut reference);
        assert_eq!(
            fast.as_ref().ok(),
            slow.as_ref().ok(),
            "rectangles differ: {fast:?} / {slow:?}"
        );
        if fast.is_ok() {
            assert!(out == reference, "pixels differ from libjpeg's");
        }
    }
});
