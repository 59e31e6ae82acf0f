//! The baseline fast path of region decoding gives libjpeg's pixels exactly, on every kind of
//! JPEG it accepts, and hands everything else (progressive, colour, damaged) back to libjpeg.

use aullm::frame::baseline::{Declined, decode_gray_region, decode_gray_region_pair};
use aullm::frame::jpeg;
use aullm::imgio::{
    IMWRITE_JPEG_OPTIMIZE, IMWRITE_JPEG_PROGRESSIVE, IMWRITE_JPEG_QUALITY,
    IMWRITE_JPEG_RST_INTERVAL, imencode,
};
use aullm::rng::Rng;
use opencv::core::Mat;
use opencv::prelude::*;

/// A textured gray image: gradients, edges and noise, so that blocks carry many coefficients.
fn image(w: usize, h: usize, seed: u64) -> Vec<u8> {
    let mut rng = Rng::new(seed);
    (0..w * h)
        .map(|i| {
            let (x, y) = ((i % w) as f32, (i / w) as f32);
            let v = 128.0
                + 60.0 * (x * 0.07).sin() * (y * 0.05).cos()
                + if (x as usize / 13 + y as usize / 11).is_multiple_of(2) {
                    30.0
                } else {
                    -30.0
                }
                + 25.0 * rng.gaussian() as f32;
            v.clamp(0.0, 255.0) as u8
        })
        .collect()
}

fn encode(px: &[u8], w: usize, h: usize, channels: i32, params: &[i32]) -> Vec<u8> {
    let flat = Mat::from_slice(px).unwrap();
    let m = flat.reshape(channels, h as i32).unwrap();
    assert_eq!(m.cols() as usize, w);
    imencode(".jpg", &m, params).unwrap()
}

/// A gray baseline JPEG at `quality`, with optimised tables or not, restart markers every
/// `restart` MCUs (0: none).
fn gray_jpeg(px: &[u8], w: usize, h: usize, quality: i32, optimize: i32, restart: i32) -> Vec<u8> {
    let params = [
        IMWRITE_JPEG_QUALITY,
        quality,
        IMWRITE_JPEG_OPTIMIZE,
        optimize,
        IMWRITE_JPEG_RST_INTERVAL,
        restart,
    ];
    encode(px, w, h, 1, &params)
}

/// Decodes `rect` both ways into buffers that start alike; both must agree on everything.
fn same_as_libjpeg(jpeg_bytes: &[u8], w: u32, h: u32, rect: [u32; 4], what: &str) {
    let mut fast = vec![7u8; (w * h) as usize];
    let mut slow = vec![7u8; (w * h) as usize];
    let a = jpeg::decode_gray(jpeg_bytes, w, h, rect, &mut fast).map_err(|e| e.to_string());
    let clamped = [
        rect[0].min(w),
        rect[1].min(h),
        rect[2].min(w),
        rect[3].min(h),
    ];
    let b =
        jpeg::libjpeg_region(jpeg_bytes, w, h, 1, clamped, &mut slow).map_err(|e| e.to_string());
    assert_eq!(a, b, "{what}: rectangles for {rect:?}");
    if let Some(i) = fast.iter().zip(&slow).position(|(x, y)| x != y) {
        panic!(
            "{what}: pixel ({}, {}) is {} by the fast path, {} by libjpeg (rect {rect:?})",
            i % w as usize,
            i / w as usize,
            fast[i],
            slow[i]
        );
    }
}

fn rects(w: u32, h: u32, rng: &mut Rng) -> Vec<[u32; 4]> {
    let mut out = vec![
        [0, 0, w, h],
        [0, 0, 1, 1],
        [w - 1, h - 1, w, h],
        [w / 3, h / 4, w, h / 2],
    ];
    for _ in 0..12 {
        let x0 = (rng.next_u64() % (w as u64)) as u32;
        let y0 = (rng.next_u64() % (h as u64)) as u32;
        let x1 = x0 + 1 + (rng.next_u64() % ((w - x0) as u64)) as u32;
        let y1 = y0 + 1 + (rng.next_u64() % ((h - y0) as u64)) as u32;
        out.push([x0, y0, x1, y1]);
    }
    out
}

#[test]
fn baseline_gray_frames_decode_to_libjpegs_pixels_at_every_quality_size_and_region() {
    let mut rng = Rng::new(5);
    for (w, h) in [(640usize, 480usize), (203, 157), (8, 8), (17, 9)] {
        let px = image(w, h, w as u64);
        for quality in [30, 75, 95, 100] {
            for optimize in [0, 1] {
                for restart in [0, 1, 3] {
                    let j = gray_jpeg(&px, w, h, quality, optimize, restart);
                    let what = format!("{w}x{h} q{quality} optimize {optimize} restart {restart}");
                    let (w, h) = (w as u32, h as u32);
                    // The fast path takes these frames itself (it does not fall back).
                    let mut out = vec![0u8; (w * h) as usize];
                    decode_gray_region(&j, w, h, [0, 0, w, h], &mut out)
                        .unwrap_or_else(|e| panic!("{what}: fast path declined: {e:?}"));
                    for r in rects(w, h, &mut rng) {
                        same_as_libjpeg(&j, w, h, r, &what);
                    }
                }
            }
        }
    }
}

/// Two frames decoded together hold libjpeg's pixels of each (the fast path taking them whenever
/// they share tables), and a frame that cannot go with the other is
/// decoded alone with its own answer.
#[test]
fn two_frames_decoded_together_hold_each_frames_own_pixels() {
    let mut rng = Rng::new(9);
    for (w, h) in [(640usize, 480usize), (203, 157), (17, 9)] {
        for quality in [50, 95] {
            for (optimize, restart) in [(0, 0), (1, 0), (0, 1), (0, 3)] {
                let what = format!("{w}x{h} q{quality} optimize {optimize} restart {restart}");
                let frames: Vec<Vec<u8>> = (0..2)
                    .map(|i| gray_jpeg(&image(w, h, 100 + i), w, h, quality, optimize, restart))
                    .collect();
                let (w, h) = (w as u32, h as u32);
                for r in rects(w, h, &mut rng) {
                    let mut outs = [vec![7u8; (w * h) as usize], vec![7u8; (w * h) as usize]];
                    let [oa, ob] = &mut outs;
                    // Shared tables (with or without restart markers): decoded together.
                    if optimize == 0 {
                        let got = decode_gray_region_pair(
                            [&frames[0], &frames[1]],
                            w,
                            h,
                            r,
                            [&mut oa[..], &mut ob[..]],
                        )
                        .unwrap_or_else(|e| panic!("{what}: pair declined: {e:?}"));
                        assert!(
                            got[0] <= r[0] && got[1] <= r[1] && got[2] >= r[2] && got[3] >= r[3]
                        );
                        assert!(
                            got.iter()
                                .zip([w, h, w, h])
                                .all(|(&g, m)| g % 8 == 0 || g == m)
                        );
                    }
                    let got = jpeg::decode_gray_pair(
                        [&frames[0], &frames[1]],
                        w,
                        h,
                        r,
                        [&mut oa[..], &mut ob[..]],
                    );
                    for (i, (got, out)) in got.into_iter().zip(&outs).enumerate() {
                        let got = got.unwrap();
                        let mut want = vec![0u8; (w * h) as usize];
                        jpeg::libjpeg_region(&frames[i], w, h, 1, got, &mut want).unwrap();
                        for y in got[1]..got[3] {
                            let row = (y * w) as usize;
                            let (a, b) = (row + got[0] as usize, row + got[2] as usize);
                            assert!(
                                out[a..b] == want[a..b],
                                "{what}: frame {i}, row {y} of {got:?} (asked {r:?})"
                            );
                        }
                    }
                }
            }
        }
    }
    // A damaged second frame: the first still decodes, the second gets its own error.
    let frames: Vec<Vec<u8>> = (0..2)
        .map(|i| gray_jpeg(&image(64, 48, i), 64, 48, 90, 0, 0))
        .collect();
    let cut = &frames[1][..frames[1].len() / 2];
    let mut outs = [vec![0u8; 64 * 48], vec![0u8; 64 * 48]];
    let [oa, ob] = &mut outs;
    assert!(
        decode_gray_region_pair(
            [&frames[0], cut],
            64,
            48,
            [0, 0, 64, 48],
            [&mut oa[..], &mut ob[..]]
        )
        .is_err()
    );
    let [a, b] = jpeg::decode_gray_pair(
        [&frames[0], cut],
        64,
        48,
        [0, 0, 64, 48],
        [&mut oa[..], &mut ob[..]],
    );
    assert_eq!(a.unwrap(), [0, 0, 64, 48]);
    let mut alone = vec![0u8; 64 * 48];
    let single = jpeg::decode_gray(cut, 64, 48, [0, 0, 64, 48], &mut alone);
    assert_eq!(
        b.map_err(|e| e.to_string()),
        single.map_err(|e| e.to_string())
    );
}

#[test]
fn progressive_and_colour_frames_are_left_to_libjpeg() {
    let (w, h) = (96usize, 64usize);
    let px = image(w, h, 3);
    let progressive = encode(&px, w, h, 1, &[IMWRITE_JPEG_PROGRESSIVE, 1]);
    let rgb: Vec<u8> = px.iter().flat_map(|&v| [v, v / 2, 255 - v]).collect();
    let colour = encode(&rgb, w, h, 3, &[IMWRITE_JPEG_QUALITY, 90]);
    let (w, h) = (w as u32, h as u32);
    for (j, what) in [(&progressive, "progressive"), (&colour, "colour")] {
        let mut out = vec![0u8; (w * h) as usize];
        assert_eq!(
            decode_gray_region(j, w, h, [0, 0, w, h], &mut out),
            Err(Declined::Unsupported),
            "{what}"
        );
        same_as_libjpeg(j, w, h, [5, 6, 70, 50], what);
    }
}

#[test]
fn damaged_frames_get_libjpegs_answer_and_never_a_panic() {
    // Differential: random damage anywhere (header or data; flipped bits, replaced bytes, cuts)
    // to frames of every kind above, random regions; both decoders must agree on everything.
    let mut rng = Rng::new(11);
    let mut bases = vec![];
    for (w, h) in [(64usize, 48usize), (33, 17), (120, 90)] {
        let px = image(w, h, w as u64 + 1);
        for quality in [20, 90, 100] {
            for (optimize, restart) in [(0, 0), (1, 0), (0, 2), (1, 1)] {
                let j = gray_jpeg(&px, w, h, quality, optimize, restart);
                bases.push((j, w as u32, h as u32));
            }
        }
    }
    let mut taken = 0;
    for case in 0..20_000 {
        let (base, w, h) = &bases[case % bases.len()];
        let (w, h) = (*w, *h);
        let mut j = base.clone();
        for _ in 0..1 + rng.next_u64() % 4 {
            let i = (rng.next_u64() % j.len() as u64) as usize;
            match rng.next_u64() % 3 {
                0 => j[i] ^= 1 << (rng.next_u64() % 8),
                1 => j[i] = rng.next_u64() as u8,
                _ => j.truncate(i.max(2)),
            }
        }
        let x0 = (rng.next_u64() % w as u64) as u32;
        let y0 = (rng.next_u64() % h as u64) as u32;
        let x1 = x0 + 1 + (rng.next_u64() % (w - x0) as u64) as u32;
        let y1 = y0 + 1 + (rng.next_u64() % (h - y0) as u64) as u32;
        let mut out = vec![0u8; (w * h) as usize];
        if decode_gray_region(&j, w, h, [x0, y0, x1, y1], &mut out).is_ok() {
            taken += 1;
        }
        same_as_libjpeg(&j, w, h, [x0, y0, x1, y1], &format!("damage case {case}"));
    }
    // Most damage leaves a frame the fast path still decodes itself.
    assert!(taken > 2_000, "the fast path took only {taken} of 20000");
}

#[test]
fn a_cut_frame_and_fill_bytes_inside_the_data_go_to_libjpeg() {
    let (w, h) = (160usize, 120usize);
    let px = image(w, h, 9);
    let good = encode(&px, w, h, 1, &[IMWRITE_JPEG_QUALITY, 100]);
    let (w, h) = (w as u32, h as u32);
    let mut out = vec![0u8; (w * h) as usize];
    // Cut short: the fast path must notice it ran out of data.
    let cut = &good[..good.len() / 2];
    assert_eq!(
        decode_gray_region(cut, w, h, [0, 0, w, h], &mut out),
        Err(Declined::Damaged)
    );
    same_as_libjpeg(cut, w, h, [0, 0, w, h], "cut short");
    // A fill byte before a stuffed 0xFF00 in the data: libjpeg's two readers disagree there
    // (its fast one keeps coefficients decoded from zeros), so the frame is libjpeg's.
    let scan = good.windows(2).position(|p| p == [0xFF, 0xDA]).unwrap() + 10;
    let at = scan
        + good[scan..]
            .windows(2)
            .position(|p| p == [0xFF, 0x00])
            .unwrap();
    let mut filled = good.clone();
    filled.insert(at, 0xFF);
    same_as_libjpeg(&filled, w, h, [0, 0, w, h], "0xFF 0xFF 0x00");
    same_as_libjpeg(&filled, w, h, [30, 20, 100, 90], "0xFF 0xFF 0x00, region");
    // A 120x90 frame (q 90) whose damage put 0xFF 0xFF 0x00 where a block reads past it: the
    // differential search that found it saw 2 pixels differ when this decoder took it.
    let found = std::fs::read(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/reference/jpeg_fill_bytes_in_data.jpg"
    ))
    .unwrap();
    same_as_libjpeg(
        &found,
        120,
        90,
        [41, 4, 114, 62],
        "found by the differential search",
    );
}
