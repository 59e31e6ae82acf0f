//! A region decoder for the common MJPEG frame: baseline Huffman, one gray component, 8-bit. It
//! walks the blocks outside the asked rectangle with a combined code-and-bits lookup (libjpeg must
//! Huffman-decode them symbol by symbol, which was half of batch CPU), and decodes the rectangle's
//! blocks with libjpeg-turbo's x86-64 fast integer IDCT reproduced lane for lane, so the pixels are
//! the ones libjpeg gives. Anything else (progressive, colour, 12-bit, damaged data) is declined
//! and the caller falls back to libjpeg.

use std::cell::{Cell, RefCell};
use std::rc::Rc;

/// Bits the combined Huffman lookup resolves at once.
const LOOKUP_BITS: u32 = 11;
/// Bits of the multi-symbol lookup that walks over blocks outside the region.
const SKIP_BITS: u32 = 13;

/// Zigzag position → natural (row-major) position, with 16 guard entries for corrupt runs, as
/// libjpeg has, so a run past the end lands on 63 instead of outside the block.
const NATURAL: [usize; 80] = [
    0, 1, 8, 16, 9, 2, 3, 10, 17, 24, 32, 25, 18, 11, 4, 5, 12, 19, 26, 33, 40, 48, 41, 34, 27, 20,
    13, 6, 7, 14, 21, 28, 35, 42, 49, 56, 57, 50, 43, 36, 29, 22, 15, 23, 30, 37, 44, 51, 58, 59,
    52, 45, 38, 31, 39, 46, 53, 60, 61, 54, 47, 55, 62, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63, 63,
    63, 63, 63, 63, 63, 63,
];

/// AA&N scale factors ×2^14 (libjpeg's `aanscales`), which fold into the dequantisation.
const AAN_SCALES: [i64; 64] = [
    16384, 22725, 21407, 19266, 16384, 12873, 8867, 4520, 22725, 31521, 29692, 26722, 22725, 17855,
    12299, 6270, 21407, 29692, 27969, 25172, 21407, 16819, 11585, 5906, 19266, 26722, 25172, 22654,
    19266, 15137, 10426, 5315, 16384, 22725, 21407, 19266, 16384, 12873, 8867, 4520, 12873, 17855,
    16819, 15137, 12873, 10114, 6967, 3552, 8867, 12299, 11585, 10426, 8867, 6967, 4799, 2446,
    4520, 6270, 5906, 5315, 4520, 3552, 2446, 1247,
];

/// Why the fast path declined a frame: the caller decodes it with libjpeg instead.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Declined {
    /// A JPEG this decoder does not handle (progressive, arithmetic, colour, 12-bit, …).
    Unsupported,
    /// Data this decoder will not guess about (truncated, bad code, missing restart marker).
    Damaged,
}

type Result<T> = std::result::Result<T, Declined>;

/// A Huffman table: the combined lookup for codes of up to [`LOOKUP_BITS`] and the canonical
/// tables for longer ones.
#[derive(Clone)]
struct Huffman {
    /// Indexed by the next [`LOOKUP_BITS`] bits: one symbol (fields `E_*`).
    lookup: Box<[u32; 1 << LOOKUP_BITS]>,
    /// Indexed by the next [`SKIP_BITS`] bits: every whole AC symbol they hold (fields `S_*`),
    /// for walking over blocks; zeros for DC tables. Fixed sizes let the hot loops index them
    /// without bounds checks.
    skip: Box<[u32; 1 << SKIP_BITS]>,
    /// Largest code of each length (−1 when none), lengths 1..=16.
    max_code: [i32; 18],
    /// Index into `symbols` minus the first code, per length.
    offset: [i32; 17],
    symbols: Vec<u8>,
}

// Lookup entry fields: bits 0..5 bits to consume (0: the code is longer than the lookup), 5..9
// zero run, 9..13 magnitude size, bit 13: the value's bits were in the lookup too and the entry
// consumes them (the value is in bits 16..32, signed); without it `size` value bits follow.
const E_LEN: u32 = 0x1f;
const E_VALUE: u32 = 1 << 13;
// Skip entry fields: bits 0..5 bits to consume (0: no whole symbol), 5..12 coefficients advanced
// before the last symbol, 12..20 advanced in all, bit 20: the last symbol is an end of block.
const S_EOB: u32 = 1 << 20;

impl Huffman {
    /// Builds the tables from a DHT's 16 counts and symbols; `ac` says how symbols are read
    /// (run/size for AC, size for DC). Tables libjpeg would reject are `Damaged`, so it words the
    /// error.
    fn new(counts: &[u8; 16], symbols: &[u8], ac: bool) -> Result<Self> {
        let mut lookup = Box::new([0u32; 1 << LOOKUP_BITS]);
        let mut max_code = [-1i32; 18];
        let mut offset = [0i32; 17];
        // libjpeg's checks (jpeg_make_d_derived_tbl) are repeated, so that a table it refuses is
        // never decoded here: at most 256 symbols, DC sizes up to 15, no all-ones code.
        if symbols.len() > 256 || (!ac && symbols.iter().any(|&s| s > 15)) {
            return Err(Declined::Damaged);
        }
        let mut code: u32 = 0;
        let mut k = 0usize;
        for len in 1..=16u32 {
            let n = counts[len as usize - 1] as usize;
            if k + n > symbols.len() {
                return Err(Declined::Damaged);
            }
            offset[len as usize] = k as i32 - code as i32;
            if n > 0 && code + n as u32 >= 1 << len {
                return Err(Declined::Damaged); // over-subscribed, or an all-ones code
            }
            for &sym in &symbols[k..k + n] {
                if len <= LOOKUP_BITS {
                    let (run, size) = if ac {
                        ((sym >> 4) as u32, (sym & 15) as u32)
                    } else {
                        (0, sym as u32)
                    };
                    if size > 15 {
                        return Err(Declined::Damaged);
                    }
                    let spare = LOOKUP_BITS - len;
                    for fill in 0..1u32 << spare {
                        let idx = (code << spare) | fill;
                        let entry = if size > 0 && len + size <= LOOKUP_BITS {
                            // The magnitude bits are inside the lookup too: decode them now.
                            let bits = (fill >> (spare - size)) as i32;
                            let v = extend(bits, size);
                            (len + size)
                                | run << 5
                                | size << 9
                                | E_VALUE
                                | ((v as u16 as u32) << 16)
                        } else {
                            len | run << 5 | size << 9
                        };
                        lookup[idx as usize] = entry;
                    }
                }
                code += 1;
            }
            k += n;
            max_code[len as usize] = if n > 0 { code as i32 - 1 } else { -1 };
            code <<= 1;
        }
        max_code[17] = i32::MAX; // sentinel: a code of 17+ bits does not exist
        let mut table = Self {
            lookup,
            skip: Box::new([0u32; 1 << SKIP_BITS]),
            max_code,
            offset,
            symbols: symbols[..k].to_vec(),
        };
        if ac {
            for w in 0..1u32 << SKIP_BITS {
                table.skip[w as usize] = table.skip_entry(w);
            }
        }
        Ok(table)
    }

    /// The symbol whose code starts at bit `pos` of the `width`-bit window `w`, and the code's
    /// length, when the whole code is inside the window (canonical search, shortest first).
    fn symbol_at(&self, w: u32, width: u32, pos: u32) -> Option<(u8, u32)> {
        (1..=width - pos).find_map(|len| {
            let code = ((w >> (width - pos - len)) & ((1 << len) - 1)) as i32;
            if code > self.max_code[len as usize] {
                return None;
            }
            let i = (code + self.offset[len as usize]) as usize;
            self.symbols.get(i).map(|&sym| (sym, len))
        })
    }

    /// The whole AC symbols (code and magnitude bits) at the start of the `SKIP_BITS`-bit
    /// window `w`, up to and including an end of block.
    fn skip_entry(&self, w: u32) -> u32 {
        let (mut pos, mut prefix, mut total) = (0u32, 0u32, 0u32);
        let mut eob = false;
        while pos < SKIP_BITS && !eob {
            let Some((sym, len)) = self.symbol_at(w, SKIP_BITS, pos) else {
                break;
            };
            let (run, size) = ((sym >> 4) as u32, (sym & 15) as u32);
            if pos + len + size > SKIP_BITS {
                break;
            }
            prefix = total;
            pos += len + size;
            match (run, size) {
                (15, 0) => total += 16,
                (_, 0) => eob = true, // libjpeg ends the block at any other zero-size symbol
                _ => total += run + 1,
            }
        }
        if pos == 0 {
            return 0;
        }
        pos | prefix << 5 | total << 12 | if eob { S_EOB } else { 0 }
    }

    /// The symbol of a code longer than the lookup, and the code's length, from the next 16 bits
    /// (the canonical search of [`Huffman::symbol_at`]: no shorter code matches these bits).
    #[cold]
    #[inline(never)]
    fn slow(&self, peek: u32) -> Result<(u8, u32)> {
        self.symbol_at(peek, 16, 0).ok_or(Declined::Damaged)
    }
}

/// The signed value of `size` magnitude bits (JPEG's EXTEND).
#[inline]
fn extend(bits: i32, size: u32) -> i32 {
    if size == 0 {
        0
    } else if bits < 1 << (size - 1) {
        bits - (1 << size) + 1
    } else {
        bits
    }
}

/// A frame's entropy-coded data and the reader state its hot loops do not touch, read through a
/// reference: a loop then holds only the bit buffer and the position in registers, which leaves
/// room for two readers at once ([`decode_gray_region_pair`]).
struct Src<'a> {
    data: &'a [u8],
    /// `pos < lim`: eight bytes can be read at `pos` and no marker was met (0 after one).
    lim: Cell<usize>,
    /// Zero bits supplied after a marker, at the tail of the buffer.
    padding: Cell<u32>,
    at_marker: Cell<bool>,
}

impl<'a> Src<'a> {
    fn new(data: &'a [u8]) -> Self {
        Self {
            data,
            lim: Cell::new(data.len().saturating_sub(7)),
            padding: Cell::new(0),
            at_marker: Cell::new(false),
        }
    }

    /// From here on the reader supplies zero bits (8 more of them).
    fn zeros(&self) {
        self.at_marker.set(true);
        self.lim.set(0);
        self.padding.set(self.padding.get() + 8);
    }
}

/// The entropy-coded bits, read most significant first, with 0xFF00 unstuffed. At a marker the
/// reader supplies zeros and counts them, so that running past the data is detected afterwards.
#[derive(Clone, Copy)]
struct Bits<'a> {
    src: &'a Src<'a>,
    pos: usize,
    /// Bits left-aligned; `avail` of them are valid.
    buf: u64,
    avail: u32,
}

impl<'a> Bits<'a> {
    fn new(src: &'a Src<'a>, pos: usize) -> Self {
        Self {
            src,
            pos,
            buf: 0,
            avail: 0,
        }
    }

    /// At least 32 valid bits (zeros past a marker).
    #[inline(always)]
    fn fill(&mut self) {
        if self.avail >= 32 {
            return;
        }
        if self.pos < self.src.lim.get() {
            // SAFETY: `pos < lim <= len - 7`, so the eight bytes at `pos` lie in `data`.
            let word = u64::from_be_bytes(unsafe {
                self.src
                    .data
                    .as_ptr()
                    .add(self.pos)
                    .cast::<[u8; 8]>()
                    .read_unaligned()
            });
            let ff = ff_bytes(word);
            let take = (63 - self.avail) / 8;
            // No 0xFF byte among the eight: take whole bytes at once (the bits beyond them are
            // the same stream's next bits, which the next fill writes again identically).
            if ff == 0 {
                self.buf |= word >> self.avail;
                self.avail += take * 8;
                self.pos += take as usize;
                return;
            }
            // Otherwise the bytes before the first 0xFF at once, and the 0xFF byte by byte.
            let clean = (ff.leading_zeros() / 8).min(take);
            if clean > 0 {
                self.buf |= (word & (u64::MAX << (64 - 8 * clean))) >> self.avail;
                self.avail += clean * 8;
                self.pos += clean as usize;
                if self.avail >= 32 {
                    return;
                }
            }
        }
        *self = self.filled_slow();
    }

    /// `self` filled byte by byte (0xFF, markers, the end); by value so that the hot loop's
    /// state stays in registers.
    #[cold]
    #[inline(never)]
    fn filled_slow(mut self) -> Self {
        let (src, d) = (self.src, self.src.data);
        while self.avail <= 56 {
            let byte = if src.at_marker.get() || self.pos >= d.len() {
                src.zeros();
                0
            } else {
                let b = d[self.pos];
                if b == 0xFF {
                    // 0xFF00 is a data 0xFF; anything else ends the data here. That includes
                    // 0xFFFF: libjpeg's slow reader takes 0xFF 0xFF.. 0x00 as one data byte,
                    // but its fast one stops there first and keeps the coefficients it had
                    // decoded from zeros, so a block reading past that point is not decoded
                    // alike; this reader then runs out of data and the frame goes to libjpeg.
                    if d.get(self.pos + 1) == Some(&0) {
                        self.pos += 2;
                        0xFF
                    } else {
                        src.zeros();
                        0
                    }
                } else {
                    self.pos += 1;
                    b
                }
            };
            self.buf |= (byte as u64) << (56 - self.avail);
            self.avail += 8;
        }
        self
    }

    #[inline(always)]
    fn peek(&self, n: u32) -> u32 {
        (self.buf >> (64 - n)) as u32
    }

    #[inline(always)]
    fn consume(&mut self, n: u32) {
        self.buf <<= n;
        self.avail -= n;
    }

    #[inline(always)]
    fn take(&mut self, n: u32) -> i32 {
        if n == 0 {
            return 0;
        }
        let v = self.peek(n) as i32;
        self.consume(n);
        v
    }

    /// The reader went past the data into the zeros supplied at a marker.
    fn overran(&self) -> bool {
        self.avail < self.src.padding.get()
    }

    /// The first marker after the entropy-coded data is an end of image (or the data ends), as
    /// libjpeg's `jpeg_finish_decompress` needs after the last row: it skips stray bytes and
    /// stuffed 0xFF00 pairs, and any other marker there is libjpeg's to judge.
    fn ends_at_eoi(self) -> bool {
        let d = self.src.data;
        let mut i = self.pos;
        loop {
            while i < d.len() && d[i] != 0xFF {
                i += 1;
            }
            let mut j = i + 1;
            while j < d.len() && d[j] == 0xFF {
                j += 1;
            }
            match d.get(j) {
                None => return true, // libjpeg supplies an end of image
                Some(0) => i = j + 1,
                Some(&code) => return code == 0xD9,
            }
        }
    }

    /// Drops what is left of this restart interval and steps over the RSTn marker expected next.
    /// By value, like [`Bits::filled_slow`]: a reader whose address never escapes stays in
    /// registers in the block loops (taking `&mut self` here kept it on the stack, +40 % time).
    #[inline(never)]
    fn restarted(mut self, n: u32) -> Result<Self> {
        if self.overran() {
            return Err(Declined::Damaged);
        }
        let (src, d) = (self.src, self.src.data);
        // Left-over bits were read ahead of the marker: the fill never reads past one.
        self.buf = 0;
        self.avail = 0;
        src.padding.set(0);
        src.at_marker.set(false);
        src.lim.set(d.len().saturating_sub(7));
        while d.get(self.pos) == Some(&0xFF) && d.get(self.pos + 1) == Some(&0xFF) {
            self.pos += 1; // fill bytes before the marker
        }
        if d.get(self.pos) == Some(&0xFF) && d.get(self.pos + 1) == Some(&(0xD0 + (n % 8) as u8)) {
            self.pos += 2;
            Ok(self)
        } else {
            Err(Declined::Damaged)
        }
    }
}

/// 0x80 in each byte of `w` that is 0xFF, 0 elsewhere (exact: no borrow between bytes).
#[inline(always)]
fn ff_bytes(w: u64) -> u64 {
    const LOW7: u64 = 0x7F7F_7F7F_7F7F_7F7F;
    let x = !w; // 0xFF bytes become zero bytes
    !(((x & LOW7) + LOW7) | x | LOW7)
}

/// What the header says, for a frame this decoder handles.
struct Header {
    width: u32,
    height: u32,
    /// Dequantisation × AA&N multipliers in natural order (libjpeg's ifast `dct_table`).
    mult: [i16; 64],
    dc: Huffman,
    ac: Huffman,
    restart_interval: u32,
    /// Where the entropy-coded data starts.
    scan_start: usize,
}

/// Tables parsed from the last frame's header bytes (the same in every frame of a stream), kept
/// per thread so a steady stream builds its lookups once.
struct HeaderCache {
    bytes: Vec<u8>,
    header: Rc<Header>,
}

thread_local! {
    static CACHE: RefCell<Option<HeaderCache>> = const { RefCell::new(None) };
}

fn be16(d: &[u8], i: usize) -> Result<usize> {
    match d.get(i..i + 2) {
        Some(b) => Ok(u16::from_be_bytes([b[0], b[1]]) as usize),
        None => Err(Declined::Damaged),
    }
}

/// Parses the markers up to the scan, or reuses the cached header when they are byte-identical.
fn header(data: &[u8]) -> Result<Rc<Header>> {
    let scan_start = scan_start(data)?;
    CACHE.with(|c| {
        let mut c = c.borrow_mut();
        if let Some(h) = c.as_ref()
            && h.bytes == data[..scan_start]
        {
            return Ok(h.header.clone());
        }
        let header = Rc::new(parse(data, scan_start)?);
        *c = Some(HeaderCache {
            bytes: data[..scan_start].to_vec(),
            header: header.clone(),
        });
        Ok(header)
    })
}

/// Offset of the first entropy-coded byte (just after the SOS segment).
fn scan_start(data: &[u8]) -> Result<usize> {
    if data.get(..2) != Some(&[0xFF, 0xD8]) {
        return Err(Declined::Damaged);
    }
    let mut i = 2;
    loop {
        if data.get(i) != Some(&0xFF) {
            return Err(Declined::Damaged);
        }
        let marker = *data.get(i + 1).ok_or(Declined::Damaged)?;
        if marker == 0xFF {
            i += 1; // fill byte
            continue;
        }
        let len = be16(data, i + 2)?;
        if len < 2 {
            return Err(Declined::Damaged);
        }
        i += 2 + len;
        if marker == 0xDA {
            return if i <= data.len() {
                Ok(i)
            } else {
                Err(Declined::Damaged)
            };
        }
    }
}

fn parse(data: &[u8], scan_start: usize) -> Result<Header> {
    let mut quant: [Option<[u16; 64]>; 4] = [None; 4];
    let mut dc: [Option<Huffman>; 4] = Default::default();
    let mut ac: [Option<Huffman>; 4] = Default::default();
    let mut frame: Option<(u32, u32, u8, usize)> = None; // width, height, component id, quant table
    let mut restart_interval = 0;
    let mut i = 2;
    while i < scan_start {
        if data[i + 1] == 0xFF {
            i += 1;
            continue;
        }
        let marker = data[i + 1];
        let len = be16(data, i + 2)?;
        let seg = data.get(i + 4..i + 2 + len).ok_or(Declined::Damaged)?;
        match marker {
            0xC0 | 0xC1 => {
                // Baseline or extended sequential Huffman: 8-bit, one component only, and
                // nothing libjpeg would refuse (a second SOF, sampling factors outside 1..=4,
                // a size over 65500).
                if seg.len() != 9 || seg[0] != 8 || seg[5] != 1 || frame.is_some() {
                    return Err(Declined::Unsupported);
                }
                let height = u16::from_be_bytes([seg[1], seg[2]]) as u32;
                let width = u16::from_be_bytes([seg[3], seg[4]]) as u32;
                let (hs, vs) = (seg[7] >> 4, seg[7] & 15);
                if !(1..=65500).contains(&width)
                    || !(1..=65500).contains(&height)
                    || !(1..=4).contains(&hs)
                    || !(1..=4).contains(&vs)
                    || seg[8] > 3
                {
                    return Err(Declined::Unsupported);
                }
                frame = Some((width, height, seg[6], seg[8] as usize));
            }
            0xC2..=0xCF if marker != 0xC4 && marker != 0xC8 && marker != 0xCC => {
                return Err(Declined::Unsupported); // progressive, lossless, arithmetic
            }
            0xC4 => {
                let mut j = 0;
                while j < seg.len() {
                    let (class, id) = (seg[j] >> 4, (seg[j] & 15) as usize);
                    let counts: [u8; 16] = seg
                        .get(j + 1..j + 17)
                        .ok_or(Declined::Damaged)?
                        .try_into()
                        .map_err(|_| Declined::Damaged)?;
                    let n: usize = counts.iter().map(|&c| c as usize).sum();
                    let symbols = seg.get(j + 17..j + 17 + n).ok_or(Declined::Damaged)?;
                    if id > 3 || class > 1 {
                        return Err(Declined::Damaged);
                    }
                    let table = Huffman::new(&counts, symbols, class == 1)?;
                    if class == 0 {
                        dc[id] = Some(table);
                    } else {
                        ac[id] = Some(table);
                    }
                    j += 17 + n;
                }
            }
            0xDB => {
                let mut j = 0;
                while j < seg.len() {
                    let (precision, id) = (seg[j] >> 4, (seg[j] & 15) as usize);
                    if id > 3 {
                        return Err(Declined::Damaged);
                    }
                    let mut q = [0u16; 64];
                    let n = if precision == 0 { 64 } else { 128 };
                    let vals = seg.get(j + 1..j + 1 + n).ok_or(Declined::Damaged)?;
                    for (k, slot) in NATURAL[..64].iter().enumerate() {
                        q[*slot] = if precision == 0 {
                            vals[k] as u16
                        } else {
                            u16::from_be_bytes([vals[2 * k], vals[2 * k + 1]])
                        };
                    }
                    quant[id] = Some(q);
                    j += 1 + n;
                }
            }
            0xDD if seg.len() == 2 => restart_interval = be16(data, i + 4)? as u32,
            0xDD => return Err(Declined::Damaged),
            0xDA => {
                // One component, spectral 0..63, no successive approximation.
                if seg.len() != 6 || seg[0] != 1 || seg[3] != 0 || seg[4] != 63 || seg[5] != 0 {
                    return Err(Declined::Unsupported);
                }
                let (td, ta) = ((seg[2] >> 4) as usize, (seg[2] & 15) as usize);
                let (width, height, id, qid) = frame.ok_or(Declined::Damaged)?;
                if seg[1] != id {
                    return Err(Declined::Damaged); // libjpeg: bad component id
                }
                let q = quant[qid].ok_or(Declined::Damaged)?;
                let mut mult = [0i16; 64];
                for (m, (&qv, &s)) in mult.iter_mut().zip(q.iter().zip(AAN_SCALES.iter())) {
                    *m = ((qv as i64 * s + (1 << 11)) >> 12) as i16;
                }
                return Ok(Header {
                    width,
                    height,
                    mult,
                    dc: dc.get(td).cloned().flatten().ok_or(Declined::Damaged)?,
                    ac: ac.get(ta).cloned().flatten().ok_or(Declined::Damaged)?,
                    restart_interval,
                    scan_start,
                });
            }
            0xDC | 0xE0..=0xEF | 0xFE => {} // DNL, APPn, COM: nothing this decoder needs
            // Anything else libjpeg either refuses or treats specially: its call.
            _ => return Err(Declined::Damaged),
        }
        i += 2 + len;
    }
    Err(Declined::Damaged)
}

/// Decodes rows `[y0, y1)` and at least columns `[x0, x1)` of a gray baseline JPEG into `out`
/// (`width*height` bytes, packed rows), exactly as libjpeg-turbo's region decode (skip, crop,
/// ifast IDCT) writes them; returns the columns written (`x0` aligned down as libjpeg's crop).
pub fn decode_gray_region(
    data: &[u8],
    width: u32,
    height: u32,
    [x0, y0, x1, y1]: [u32; 4],
    out: &mut [u8],
) -> Result<(u32, u32)> {
    let h = header(data)?;
    if h.width != width || h.height != height || out.len() < width as usize * height as usize {
        return Err(Declined::Unsupported); // the libjpeg path words this error
    }
    if x0 >= x1 || y0 >= y1 || x1 > width || y1 > height {
        return Err(Declined::Unsupported);
    }
    // libjpeg crops a one-component image at whole blocks whatever its sampling factor says.
    let cx0 = x0 / 8 * 8;
    let blocks_x = width.div_ceil(8);
    let (bx0, bx1) = (cx0 / 8, x1.div_ceil(8));
    let (by0, by1) = (y0 / 8, y1.div_ceil(8));
    let src = Src::new(data);
    let mut bits = Bits::new(&src, h.scan_start);
    let mut pred = 0i32;
    let mut coef = [0i16; 64];
    let mut pixels = [0u8; 64];
    let mut mcu = 0u32;
    for by in 0..by1 {
        for bx in 0..blocks_x {
            if h.restart_interval > 0 && mcu > 0 && mcu.is_multiple_of(h.restart_interval) {
                bits = bits.restarted(mcu / h.restart_interval - 1)?;
                pred = 0;
            }
            mcu += 1;
            if by >= by0 && bx >= bx0 && bx < bx1 {
                coef.fill(0);
                decode_block(&mut bits, &h.dc, &h.ac, &mut pred, &mut coef)?;
                idct_ifast(&coef, &h.mult, &mut pixels);
                // Rows [y0, y1) and columns [cx0, x1) of this block's 8×8 pixels.
                let (px, py) = (bx * 8, by * 8);
                put_block(
                    &pixels,
                    out,
                    width as usize,
                    [px, py],
                    py.max(y0)..(py + 8).min(y1),
                    px.max(cx0)..(px + 8).min(x1),
                );
            } else {
                skip_block(&mut bits, &h.dc, &h.ac, &mut pred)?;
            }
        }
        if bits.overran() {
            return Err(Declined::Damaged);
        }
    }
    // A region down to the last row is where libjpeg goes on to read the markers after the
    // scan (and refuses a stray one).
    if by1 == height.div_ceil(8) && !bits.ends_at_eoi() {
        return Err(Declined::Damaged);
    }
    Ok((cx0, x1))
}

/// [`decode_gray_region`] for two frames of one stream (byte-identical headers) at once, in lock
/// step: the Huffman decoding of a frame is one serial chain, and two independent chains let the
/// core overlap them (~20 % less time per frame than alone). Writes the region's whole
/// blocks in both frames and returns the block-aligned rectangle (within the frame) they hold.
/// Declines (for the caller to decode each frame alone) headers that differ and whatever
/// [`decode_gray_region`] declines.
pub fn decode_gray_region_pair(
    [a, b]: [&[u8]; 2],
    width: u32,
    height: u32,
    [x0, y0, x1, y1]: [u32; 4],
    [oa, ob]: [&mut [u8]; 2],
) -> Result<[u32; 4]> {
    let h = header(a)?;
    let n = width as usize * height as usize;
    if h.width != width || h.height != height || oa.len() < n || ob.len() < n {
        return Err(Declined::Unsupported);
    }
    if x0 >= x1 || y0 >= y1 || x1 > width || y1 > height {
        return Err(Declined::Unsupported);
    }
    // The second frame must decode with the first one's tables (and restart interval).
    if b.get(..h.scan_start) != Some(&a[..h.scan_start]) {
        return Err(Declined::Unsupported);
    }
    let blocks_x = width.div_ceil(8);
    let (bx0, bx1) = (x0 / 8, x1.div_ceil(8));
    let (by0, by1) = (y0 / 8, y1.div_ceil(8));
    let (sa, sb) = (Src::new(a), Src::new(b));
    let mut bits = [Bits::new(&sa, h.scan_start), Bits::new(&sb, h.scan_start)];
    let mut pred = [0i32; 2];
    let mut out = [oa, ob];
    let ri = h.restart_interval;
    let mut mcu = 0u32;
    for by in 0..by1 {
        // The row's runs of blocks walked past and decoded: [first, end) and whether decoded.
        let runs = if by < by0 {
            [(0, blocks_x, false), (0, 0, false), (0, 0, false)]
        } else {
            [(0, bx0, false), (bx0, bx1, true), (bx1, blocks_x, false)]
        };
        for (mut bx, end, inside) in runs {
            while bx < end {
                if ri > 0 && mcu > 0 && mcu.is_multiple_of(ri) {
                    let n = mcu / ri - 1;
                    bits = [bits[0].restarted(n)?, bits[1].restarted(n)?];
                    pred = [0; 2];
                }
                // Up to the end of the run or the next restart marker, whichever comes first.
                let n = if ri > 0 {
                    (end - bx).min(ri - mcu % ri)
                } else {
                    end - bx
                };
                bits = if inside {
                    region_run_pair(&h, bits, &mut pred, [bx, bx + n, by], &mut out)?
                } else {
                    skip_run_pair(&h, bits, &mut pred, n)?
                };
                (bx, mcu) = (bx + n, mcu + n);
            }
        }
        if bits[0].overran() || bits[1].overran() {
            return Err(Declined::Damaged);
        }
    }
    if by1 == height.div_ceil(8) && !(bits[0].ends_at_eoi() && bits[1].ends_at_eoi()) {
        return Err(Declined::Damaged);
    }
    Ok([
        bx0 * 8,
        by0 * 8,
        (bx1 * 8).min(width),
        (by1 * 8).min(height),
    ])
}

/// Walks over the next `n` blocks of both frames, symbol groups taken in turns. Not inlined:
/// a small function keeps both readers in registers.
#[inline(never)]
fn skip_run_pair<'a>(
    h: &Header,
    [mut a, mut b]: [Bits<'a>; 2],
    pred: &mut [i32; 2],
    n: u32,
) -> Result<[Bits<'a>; 2]> {
    let (dc, ac) = (&h.dc, &h.ac);
    let [mut pa, mut pb] = *pred;
    for _ in 0..n {
        decode_dc(&mut a, dc, &mut pa)?;
        decode_dc(&mut b, dc, &mut pb)?;
        let (mut ka, mut kb) = (1u32, 1u32);
        while ka < 64 && kb < 64 {
            skip_step(&mut a, ac, &mut ka)?;
            skip_step(&mut b, ac, &mut kb)?;
        }
        while ka < 64 {
            skip_step(&mut a, ac, &mut ka)?;
        }
        while kb < 64 {
            skip_step(&mut b, ac, &mut kb)?;
        }
    }
    *pred = [pa, pb];
    Ok([a, b])
}

/// Decodes blocks `[bx0, bx1)` of block row `by` of both frames (symbols in turns) and writes
/// their whole 8x8 pixels inside the frame.
#[inline(never)]
fn region_run_pair<'a>(
    h: &Header,
    [mut a, mut b]: [Bits<'a>; 2],
    pred: &mut [i32; 2],
    [bx0, bx1, by]: [u32; 3],
    out: &mut [&mut [u8]; 2],
) -> Result<[Bits<'a>; 2]> {
    let (dc, ac) = (&h.dc, &h.ac);
    let [mut pa, mut pb] = *pred;
    let mut pixels = [[0u8; 64]; 2];
    let width = h.width as usize;
    for bx in bx0..bx1 {
        let mut coef = [[0i16; 64]; 2];
        let [ca, cb] = &mut coef;
        decode_dc(&mut a, dc, &mut pa)?;
        decode_dc(&mut b, dc, &mut pb)?;
        (ca[0], cb[0]) = (pa as i16, pb as i16);
        let (mut ka, mut kb) = (1usize, 1usize);
        while ka < 64 && kb < 64 {
            ac_step(&mut a, ac, &mut ka, ca)?;
            ac_step(&mut b, ac, &mut kb, cb)?;
        }
        while ka < 64 {
            ac_step(&mut a, ac, &mut ka, ca)?;
        }
        while kb < 64 {
            ac_step(&mut b, ac, &mut kb, cb)?;
        }
        idct_ifast(ca, &h.mult, &mut pixels[0]);
        idct_ifast(cb, &h.mult, &mut pixels[1]);
        let (px, py) = (bx * 8, by * 8);
        for (p, o) in pixels.iter().zip(out.iter_mut()) {
            let (rows, cols) = (py..(py + 8).min(h.height), px..(px + 8).min(h.width));
            put_block(p, o, width, [px, py], rows, cols);
        }
    }
    *pred = [pa, pb];
    Ok([a, b])
}

/// Writes frame rows `rows` and columns `cols` (inside the block at `[px, py]`) of a frame
/// `width` wide from the block's 8x8 `pixels`.
#[inline(always)]
fn put_block(
    pixels: &[u8; 64],
    out: &mut [u8],
    width: usize,
    [px, py]: [u32; 2],
    rows: std::ops::Range<u32>,
    cols: std::ops::Range<u32>,
) {
    let whole = cols.start == px && cols.end == px + 8;
    for y in rows {
        let src = &pixels[((y - py) * 8) as usize..][..8];
        let row = y as usize * width;
        if whole {
            // A fixed 8-byte copy is a move, not a call to memcpy.
            let dst: &mut [u8; 8] = (&mut out[row + px as usize..][..8])
                .try_into()
                .expect("8 bytes");
            dst.copy_from_slice(src);
        } else {
            out[row + cols.start as usize..row + cols.end as usize]
                .copy_from_slice(&src[(cols.start - px) as usize..(cols.end - px) as usize]);
        }
    }
}

/// The DC difference of the next block, added to the predictor.
#[inline(always)]
fn decode_dc(bits: &mut Bits, dc: &Huffman, pred: &mut i32) -> Result<()> {
    bits.fill();
    let e = dc.lookup[bits.peek(LOOKUP_BITS) as usize];
    let diff = if e & E_VALUE != 0 {
        bits.consume(e & E_LEN);
        (e >> 16) as u16 as i16 as i32
    } else {
        let size = if e & E_LEN == 0 {
            let (sym, len) = dc.slow(bits.peek(16))?;
            bits.consume(len);
            sym as u32
        } else {
            bits.consume(e & E_LEN);
            (e >> 9) & 15
        };
        if size > 15 {
            return Err(Declined::Damaged);
        }
        bits.fill();
        extend(bits.take(size), size)
    };
    *pred += diff;
    Ok(())
}

/// Walks over one block's codes without keeping its coefficients (only the DC predictor),
/// several symbols per lookup where they fit.
#[inline(always)]
fn skip_block(bits: &mut Bits, dc: &Huffman, ac: &Huffman, pred: &mut i32) -> Result<()> {
    decode_dc(bits, dc, pred)?;
    let mut k = 1;
    while k < 64 {
        skip_step(bits, ac, &mut k)?;
    }
    Ok(())
}

/// Walks over the AC codes at coefficient `k` of a block: every whole symbol the next
/// [`SKIP_BITS`] hold, else one; `k` is 64 or more once the block ends.
#[inline(always)]
fn skip_step(bits: &mut Bits, ac: &Huffman, k: &mut u32) -> Result<()> {
    bits.fill();
    let s = ac.skip[bits.peek(SKIP_BITS) as usize];
    // The group is taken whole unless the block ends inside it (a last coefficient at 63
    // needs no end-of-block code, and the next bits are the next block's).
    if s != 0 && *k + ((s >> 5) & 127) < 64 {
        bits.consume(s & E_LEN);
        *k = if s & S_EOB != 0 {
            64
        } else {
            *k + ((s >> 12) & 255)
        };
        return Ok(());
    }
    let e = ac.lookup[bits.peek(LOOKUP_BITS) as usize];
    let len = e & E_LEN;
    let (run, size);
    if len == 0 {
        let (sym, len) = ac.slow(bits.peek(16))?;
        bits.consume(len);
        (run, size) = ((sym >> 4) as u32, (sym & 15) as u32);
        bits.fill();
        bits.consume(size);
    } else {
        bits.consume(len);
        run = (e >> 5) & 15;
        size = (e >> 9) & 15;
        if e & E_VALUE == 0 {
            bits.fill();
            bits.consume(size);
        }
    }
    *k = match (run, size) {
        (15, 0) => *k + 16,
        (_, 0) => 64, // end of block
        _ => *k + run + 1,
    };
    Ok(())
}

/// Decodes one block's quantised coefficients into natural order.
#[inline(always)]
fn decode_block(
    bits: &mut Bits,
    dc: &Huffman,
    ac: &Huffman,
    pred: &mut i32,
    coef: &mut [i16; 64],
) -> Result<()> {
    decode_dc(bits, dc, pred)?;
    coef[0] = *pred as i16;
    let mut k = 1usize;
    while k < 64 {
        ac_step(bits, ac, &mut k, coef)?;
    }
    Ok(())
}

/// Decodes the next AC symbol of a block at coefficient `k` into `coef`; `k` is 64 or more once
/// the block ends.
#[inline(always)]
fn ac_step(bits: &mut Bits, ac: &Huffman, k: &mut usize, coef: &mut [i16; 64]) -> Result<()> {
    bits.fill();
    let e = ac.lookup[bits.peek(LOOKUP_BITS) as usize];
    let len = e & E_LEN;
    if e & E_VALUE != 0 {
        bits.consume(len);
        *k += ((e >> 5) & 15) as usize;
        coef[NATURAL[*k]] = (e >> 16) as u16 as i16;
        *k += 1;
        return Ok(());
    }
    let sym = if len == 0 {
        let (sym, len) = ac.slow(bits.peek(16))?;
        bits.consume(len);
        sym as u32
    } else {
        bits.consume(len);
        ((e >> 5) & 15) << 4 | ((e >> 9) & 15)
    };
    let (run, size) = ((sym >> 4) as usize, sym & 15);
    bits.fill();
    let value = extend(bits.take(size), size);
    if size == 0 {
        *k = if run != 15 { 64 } else { *k + 16 };
    } else {
        *k += run;
        coef[NATURAL[*k]] = value as i16;
        *k += 1;
    }
    Ok(())
}

// libjpeg-turbo's SSE2 ifast IDCT works in 16-bit lanes: products are `pmulhw` of the operand
// shifted left by 2 with constants FIX(c)·2^6 (CONST_BITS 8), sums wrap. Reproducing that (not
// the C jidctfst, which rounds differently) is what makes the pixels identical.
const F_1_414: i32 = 362 << 6;
const F_1_847: i32 = 473 << 6;
const F_1_082: i32 = 277 << 6;
const MF_1_613: i32 = -((669 - 256) << 6);

#[inline(always)]
fn mulhi(a: i16, c: i32) -> i16 {
    ((a as i32 * c) >> 16) as i16
}

/// One 1-D AA&N inverse DCT over 8 lanes (`v[i][lane]`), as the SSE2 pass computes it.
#[cfg_attr(target_arch = "x86_64", allow(dead_code))]
#[inline(always)]
fn idct_pass(v: &[[i16; 8]; 8]) -> [[i16; 8]; 8] {
    let mut o = [[0i16; 8]; 8];
    for l in 0..8 {
        let (v0, v1, v2, v3) = (v[0][l], v[1][l], v[2][l], v[3][l]);
        let (v4, v5, v6, v7) = (v[4][l], v[5][l], v[6][l], v[7][l]);
        // Even part.
        let tmp10 = v0.wrapping_add(v4);
        let tmp11 = v0.wrapping_sub(v4);
        let tmp13 = v2.wrapping_add(v6);
        let tmp12 = mulhi(v2.wrapping_sub(v6).wrapping_shl(2), F_1_414).wrapping_sub(tmp13);
        let tmp0 = tmp10.wrapping_add(tmp13);
        let tmp3 = tmp10.wrapping_sub(tmp13);
        let tmp1 = tmp11.wrapping_add(tmp12);
        let tmp2 = tmp11.wrapping_sub(tmp12);
        // Odd part.
        let z12 = v1.wrapping_sub(v7);
        let z10 = v5.wrapping_sub(v3);
        let z11 = v1.wrapping_add(v7);
        let z13 = v5.wrapping_add(v3);
        let (z10s, z12s) = (z10.wrapping_shl(2), z12.wrapping_shl(2));
        let tmp7 = z11.wrapping_add(z13);
        let t11 = mulhi(z11.wrapping_sub(z13).wrapping_shl(2), F_1_414);
        let z5 = mulhi(z10s.wrapping_add(z12s), F_1_847);
        let t10 = mulhi(z12s, F_1_082).wrapping_sub(z5);
        let t12 = mulhi(z10s, MF_1_613).wrapping_sub(z10).wrapping_add(z5);
        let tmp6 = t12.wrapping_sub(tmp7);
        let tmp5 = t11.wrapping_sub(tmp6);
        let tmp4 = t10.wrapping_add(tmp5);
        o[0][l] = tmp0.wrapping_add(tmp7);
        o[7][l] = tmp0.wrapping_sub(tmp7);
        o[1][l] = tmp1.wrapping_add(tmp6);
        o[6][l] = tmp1.wrapping_sub(tmp6);
        o[2][l] = tmp2.wrapping_add(tmp5);
        o[5][l] = tmp2.wrapping_sub(tmp5);
        o[4][l] = tmp3.wrapping_add(tmp4);
        o[3][l] = tmp3.wrapping_sub(tmp4);
    }
    o
}

/// Dequantises and inverse-transforms one block into 8×8 pixels, bit-exact with libjpeg-turbo's
/// `jsimd_idct_ifast_sse2` (the IDCT libjpeg uses for `JDCT_IFAST` on x86-64).
#[cfg(not(target_arch = "x86_64"))]
fn idct_ifast(coef: &[i16; 64], mult: &[i16; 64], out: &mut [u8; 64]) {
    // Pass 1 over columns: rows of the block are the lanes' inputs.
    let mut rows = [[0i16; 8]; 8];
    for r in 0..8 {
        for c in 0..8 {
            rows[r][c] = coef[r * 8 + c].wrapping_mul(mult[r * 8 + c]);
        }
    }
    let cols = idct_pass(&rows); // cols[i][c]: output row i of column c
    // Pass 2 over rows: transpose so that lane = row.
    let mut t = [[0i16; 8]; 8];
    for i in 0..8 {
        for c in 0..8 {
            t[c][i] = cols[i][c];
        }
    }
    let res = idct_pass(&t); // res[c][r]: pixel (r, c)
    for c in 0..8 {
        for r in 0..8 {
            // psraw 5, packsswb, + 128 (wrapping) = clamp to [-128, 127] and recentre.
            let v = (res[c][r] >> 5).clamp(-128, 127);
            out[r * 8 + c] = (v + 128) as u8;
        }
    }
}

/// [`idct_pass`] and the IDCT in SSE2, the same lane operations as the scalar version (which
/// documents them), so that a block costs what it costs libjpeg.
#[cfg(target_arch = "x86_64")]
mod sse2 {
    use super::{F_1_082, F_1_414, F_1_847, MF_1_613};
    use std::arch::x86_64::*;

    #[inline]
    #[target_feature(enable = "sse2")]
    fn pass(v: [__m128i; 8]) -> [__m128i; 8] {
        let k = |c: i32| _mm_set1_epi16(c as i16);
        let (f1414, f1847, f1082, mf1613) = (k(F_1_414), k(F_1_847), k(F_1_082), k(MF_1_613));
        let tmp10 = _mm_add_epi16(v[0], v[4]);
        let tmp11 = _mm_sub_epi16(v[0], v[4]);
        let tmp13 = _mm_add_epi16(v[2], v[6]);
        let tmp12 = _mm_sub_epi16(
            _mm_mulhi_epi16(_mm_slli_epi16(_mm_sub_epi16(v[2], v[6]), 2), f1414),
            tmp13,
        );
        let tmp0 = _mm_add_epi16(tmp10, tmp13);
        let tmp3 = _mm_sub_epi16(tmp10, tmp13);
        let tmp1 = _mm_add_epi16(tmp11, tmp12);
        let tmp2 = _mm_sub_epi16(tmp11, tmp12);
        let z12 = _mm_sub_epi16(v[1], v[7]);
        let z10 = _mm_sub_epi16(v[5], v[3]);
        let z11 = _mm_add_epi16(v[1], v[7]);
        let z13 = _mm_add_epi16(v[5], v[3]);
        let (z10s, z12s) = (_mm_slli_epi16(z10, 2), _mm_slli_epi16(z12, 2));
        let tmp7 = _mm_add_epi16(z11, z13);
        let t11 = _mm_mulhi_epi16(_mm_slli_epi16(_mm_sub_epi16(z11, z13), 2), f1414);
        let z5 = _mm_mulhi_epi16(_mm_add_epi16(z10s, z12s), f1847);
        let t10 = _mm_sub_epi16(_mm_mulhi_epi16(z12s, f1082), z5);
        let t12 = _mm_add_epi16(_mm_sub_epi16(_mm_mulhi_epi16(z10s, mf1613), z10), z5);
        let tmp6 = _mm_sub_epi16(t12, tmp7);
        let tmp5 = _mm_sub_epi16(t11, tmp6);
        let tmp4 = _mm_add_epi16(t10, tmp5);
        [
            _mm_add_epi16(tmp0, tmp7),
            _mm_add_epi16(tmp1, tmp6),
            _mm_add_epi16(tmp2, tmp5),
            _mm_sub_epi16(tmp3, tmp4),
            _mm_add_epi16(tmp3, tmp4),
            _mm_sub_epi16(tmp2, tmp5),
            _mm_sub_epi16(tmp1, tmp6),
            _mm_sub_epi16(tmp0, tmp7),
        ]
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn transpose(r: [__m128i; 8]) -> [__m128i; 8] {
        let a0 = _mm_unpacklo_epi16(r[0], r[1]);
        let a1 = _mm_unpackhi_epi16(r[0], r[1]);
        let a2 = _mm_unpacklo_epi16(r[2], r[3]);
        let a3 = _mm_unpackhi_epi16(r[2], r[3]);
        let a4 = _mm_unpacklo_epi16(r[4], r[5]);
        let a5 = _mm_unpackhi_epi16(r[4], r[5]);
        let a6 = _mm_unpacklo_epi16(r[6], r[7]);
        let a7 = _mm_unpackhi_epi16(r[6], r[7]);
        let b0 = _mm_unpacklo_epi32(a0, a2);
        let b1 = _mm_unpackhi_epi32(a0, a2);
        let b2 = _mm_unpacklo_epi32(a1, a3);
        let b3 = _mm_unpackhi_epi32(a1, a3);
        let b4 = _mm_unpacklo_epi32(a4, a6);
        let b5 = _mm_unpackhi_epi32(a4, a6);
        let b6 = _mm_unpacklo_epi32(a5, a7);
        let b7 = _mm_unpackhi_epi32(a5, a7);
        [
            _mm_unpacklo_epi64(b0, b4),
            _mm_unpackhi_epi64(b0, b4),
            _mm_unpacklo_epi64(b1, b5),
            _mm_unpackhi_epi64(b1, b5),
            _mm_unpacklo_epi64(b2, b6),
            _mm_unpackhi_epi64(b2, b6),
            _mm_unpacklo_epi64(b3, b7),
            _mm_unpackhi_epi64(b3, b7),
        ]
    }

    /// See the scalar `idct_ifast`. Inlined: the transform then overlaps the next block's
    /// Huffman decoding, which a call boundary hinders.
    #[inline(always)]
    pub(super) fn idct_ifast(coef: &[i16; 64], mult: &[i16; 64], out: &mut [u8; 64]) {
        // SAFETY: SSE2 is part of the x86-64 baseline, so every x86-64 CPU has it.
        unsafe { idct(coef, mult, out) }
    }

    #[inline]
    #[target_feature(enable = "sse2")]
    fn idct(coef: &[i16; 64], mult: &[i16; 64], out: &mut [u8; 64]) {
        let load = |a: &[i16; 64], r: usize| {
            // SAFETY: row r of a 64-element array is 8 in-bounds i16 (16 bytes); unaligned load.
            unsafe { _mm_loadu_si128(a.as_ptr().add(r * 8).cast()) }
        };
        let rows: [__m128i; 8] =
            std::array::from_fn(|r| _mm_mullo_epi16(load(coef, r), load(mult, r)));
        let cols = pass(rows);
        let res = transpose(pass(transpose(cols)));
        let centre = _mm_set1_epi8(-128);
        for r in 0..4 {
            let lo = _mm_srai_epi16(res[2 * r], 5);
            let hi = _mm_srai_epi16(res[2 * r + 1], 5);
            let px = _mm_add_epi8(_mm_packs_epi16(lo, hi), centre);
            // SAFETY: rows 2r and 2r+1 are 16 in-bounds bytes of the 64-byte block.
            unsafe { _mm_storeu_si128(out.as_mut_ptr().add(16 * r).cast(), px) };
        }
    }
}

#[cfg(target_arch = "x86_64")]
use sse2::idct_ifast;
