//! Block-quantized weight matrices and their products with quantized
//! activations: the arithmetic that decides how fast a small model decodes.
//!
//! Decoding one token reads every weight once, so on a CPU the speed is set
//! by how many bytes the weights take and how few instructions each block
//! costs. Two layouts cover GGUF's common types without widening them:
//!
//! - [`Q4Group`]: 4-bit values with a scale and an offset per 32 weights.
//!   GGML's Q4_1 is exactly this; Q4_0 is the same with offset −8 × scale.
//! - [`Q8Group`]: 8-bit values with a scale per 32 weights (GGML's Q8_0).
//!   Anything else is dequantized by candle and requantized to this.
//!
//! Both interleave four rows per block so one load of the activations
//! serves four dot products, and hold scales as `f32` (converted once at
//! load instead of once per block per token). Activations are quantized
//! per 32 values to `i8` with a scale, as llama.cpp does, so the products
//! are integer multiply-adds.
//!
//! Each product has a portable scalar form and an AVX2 form (through
//! `pulp`'s safe, runtime-detected intrinsics). Integer sums are exact in
//! both; the forms differ only in the order `f32` partial sums are added.

use pulp::x86::V3;
use rayon::prelude::*;

#[cfg(target_arch = "x86_64")]
use core::arch::x86_64::{__m128, __m128i, __m256i};

/// Weights per quantization block (every type used here).
pub(crate) const BLOCK: usize = 32;

/// Rows interleaved in one group.
pub(crate) const LANES: usize = 4;

/// Four rows' 4-bit weights for one block: weight `i` of row `r` is
/// `d[r] × q + m[r]`, with `q` the low nibble of `qs[r][i]` for `i < 16`
/// and the high nibble of `qs[r][i − 16]` otherwise (GGML's nibble order).
#[derive(Clone, Copy, Default)]
pub(crate) struct Q4Group {
    d: [f32; LANES],
    m: [f32; LANES],
    qs: [[u8; 16]; LANES],
}

/// Four rows' 8-bit weights for one block: weight `i` of row `r` is
/// `d[r] × qs[r][i]`.
#[derive(Clone, Copy)]
pub(crate) struct Q8Group {
    d: [f32; LANES],
    qs: [[i8; BLOCK]; LANES],
}

impl Default for Q8Group {
    fn default() -> Self {
        Self {
            d: [0.0; LANES],
            qs: [[0; BLOCK]; LANES],
        }
    }
}

/// How a matrix's weights are stored.
enum Packed {
    Q4(Vec<Q4Group>),
    Q8(Vec<Q8Group>),
}

/// Why a tensor could not be packed.
#[derive(Debug, thiserror::Error)]
pub(crate) enum PackError {
    /// The raw data is not `rows × cols` weights of the type.
    #[error("has {got} bytes of data where {want} were expected")]
    Size { got: usize, want: usize },
    /// A row length that is not a whole number of blocks.
    #[error("has rows of {0} values, not a multiple of {BLOCK}")]
    Columns(usize),
    /// A scale that is infinite or NaN: the block's weights are meaningless.
    #[error("has a non-finite scale in block {0}")]
    Scale(usize),
    /// An infinite or NaN weight, which no scale can represent.
    #[error("has a non-finite weight in block {0}")]
    Weight(usize),
}

/// A weight matrix in one of the layouts above, `rows × cols`, applied as
/// `y = W x`.
pub(crate) struct QMatrix {
    rows: usize,
    cols: usize,
    packed: Packed,
}

/// GGML's half-precision scale at `bytes[at..at + 2]`, as `f32`.
fn half_at(bytes: &[u8], at: usize) -> f32 {
    match bytes.get(at..at + 2) {
        Some(&[lo, hi]) => half::f16::from_le_bytes([lo, hi]).to_f32(),
        _ => f32::NAN,
    }
}

fn finite(v: f32, block: usize) -> Result<f32, PackError> {
    if v.is_finite() {
        Ok(v)
    } else {
        Err(PackError::Scale(block))
    }
}

impl QMatrix {
    fn blocks_per_row(&self) -> usize {
        self.cols / BLOCK
    }

    fn groups(&self) -> usize {
        self.rows.div_ceil(LANES)
    }

    fn check(rows: usize, cols: usize, raw: &[u8], block_bytes: usize) -> Result<(), PackError> {
        if cols % BLOCK != 0 {
            return Err(PackError::Columns(cols));
        }
        let want = rows * (cols / BLOCK) * block_bytes;
        if raw.len() != want {
            return Err(PackError::Size {
                got: raw.len(),
                want,
            });
        }
        Ok(())
    }

    /// Packs GGML Q4_0 data (18-byte blocks: scale, 16 bytes of nibbles
    /// holding `q`, weight `d × (q − 8)`).
    pub(crate) fn from_q4_0(rows: usize, cols: usize, raw: &[u8]) -> Result<Self, PackError> {
        Self::from_q4(rows, cols, raw, 18, |block| {
            let d = half_at(block, 0);
            (d, -8.0 * d, 2)
        })
    }

    /// Packs GGML Q4_1 data (20-byte blocks: scale, offset, 16 bytes of
    /// nibbles holding `q`, weight `d × q + m`).
    pub(crate) fn from_q4_1(rows: usize, cols: usize, raw: &[u8]) -> Result<Self, PackError> {
        Self::from_q4(rows, cols, raw, 20, |block| {
            (half_at(block, 0), half_at(block, 2), 4)
        })
    }

    /// `header` gives a block's scale, offset and where its nibbles start.
    fn from_q4(
        rows: usize,
        cols: usize,
        raw: &[u8],
        block_bytes: usize,
        header: impl Fn(&[u8]) -> (f32, f32, usize),
    ) -> Result<Self, PackError> {
        Self::check(rows, cols, raw, block_bytes)?;
        let per_row = cols / BLOCK;
        let mut groups = vec![Q4Group::default(); rows.div_ceil(LANES) * per_row];
        for (i, block) in raw.chunks_exact(block_bytes).enumerate() {
            let (row, b) = (i / per_row, i % per_row);
            let (d, m, at) = header(block);
            let (d, m) = (finite(d, i)?, finite(m, i)?);
            let group = groups
                .get_mut((row / LANES) * per_row + b)
                .ok_or(PackError::Scale(i))?;
            let lane = row % LANES;
            if let (Some(gd), Some(gm), Some(gq), Some(q)) = (
                group.d.get_mut(lane),
                group.m.get_mut(lane),
                group.qs.get_mut(lane),
                block.get(at..at + 16),
            ) {
                *gd = d;
                *gm = m;
                gq.copy_from_slice(q);
            }
        }
        Ok(Self {
            rows,
            cols,
            packed: Packed::Q4(groups),
        })
    }

    /// Packs GGML Q8_0 data (34-byte blocks: scale, 32 signed bytes).
    pub(crate) fn from_q8_0(rows: usize, cols: usize, raw: &[u8]) -> Result<Self, PackError> {
        Self::check(rows, cols, raw, 34)?;
        let per_row = cols / BLOCK;
        let mut groups = vec![Q8Group::default(); rows.div_ceil(LANES) * per_row];
        for (i, block) in raw.chunks_exact(34).enumerate() {
            let (row, b) = (i / per_row, i % per_row);
            let d = finite(half_at(block, 0), i)?;
            let group = groups
                .get_mut((row / LANES) * per_row + b)
                .ok_or(PackError::Scale(i))?;
            let lane = row % LANES;
            if let (Some(gd), Some(gq)) = (group.d.get_mut(lane), group.qs.get_mut(lane)) {
                *gd = d;
                for (dst, src) in gq.iter_mut().zip(block.iter().skip(2)) {
                    *dst = i8::from_ne_bytes([*src]);
                }
            }
        }
        Ok(Self {
            rows,
            cols,
            packed: Packed::Q8(groups),
        })
    }

    /// Quantizes `f32` weights (`rows × cols`, row-major) to Q8_0, for
    /// tensor types without a layout here.
    pub(crate) fn quantize_q8_0(
        rows: usize,
        cols: usize,
        values: &[f32],
    ) -> Result<Self, PackError> {
        if cols % BLOCK != 0 {
            return Err(PackError::Columns(cols));
        }
        if values.len() != rows * cols {
            return Err(PackError::Size {
                got: values.len() * 4,
                want: rows * cols * 4,
            });
        }
        let per_row = cols / BLOCK;
        let mut groups = vec![Q8Group::default(); rows.div_ceil(LANES) * per_row];
        for (i, block) in values.chunks_exact(BLOCK).enumerate() {
            let (row, b) = (i / per_row, i % per_row);
            if block.iter().any(|v| !v.is_finite()) {
                return Err(PackError::Weight(i));
            }
            let mut q = [0i8; BLOCK];
            let d = finite(quantize_block(block, &mut q), i)?;
            if let Some(group) = groups.get_mut((row / LANES) * per_row + b) {
                if let (Some(gd), Some(gq)) =
                    (group.d.get_mut(row % LANES), group.qs.get_mut(row % LANES))
                {
                    *gd = d;
                    *gq = q;
                }
            }
        }
        Ok(Self {
            rows,
            cols,
            packed: Packed::Q8(groups),
        })
    }

    /// Row `row`, dequantized: an embedding lookup. `None` past the end.
    pub(crate) fn row(&self, row: usize) -> Option<Vec<f32>> {
        if row >= self.rows {
            return None;
        }
        let per_row = self.blocks_per_row();
        let lane = row % LANES;
        let start = (row / LANES) * per_row;
        let mut out = Vec::with_capacity(self.cols);
        match &self.packed {
            Packed::Q4(groups) => {
                for g in groups.get(start..start + per_row)? {
                    let (d, m, qs) = (*g.d.get(lane)?, *g.m.get(lane)?, g.qs.get(lane)?);
                    out.extend(qs.iter().map(|q| d * f32::from(q & 0x0f) + m));
                    out.extend(qs.iter().map(|q| d * f32::from(q >> 4) + m));
                }
            }
            Packed::Q8(groups) => {
                for g in groups.get(start..start + per_row)? {
                    let (d, qs) = (*g.d.get(lane)?, g.qs.get(lane)?);
                    out.extend(qs.iter().map(|&q| d * f32::from(q)));
                }
            }
        }
        Some(out)
    }

    /// `out[i] = W · x_i` for each activation row `x_i` in `acts`, with
    /// `out` laid out `acts.rows() × self.rows()`. Rows of `W` are shared
    /// out between rayon's threads.
    pub(crate) fn matmul(&self, acts: &QActs, out: &mut [f32], kernels: Kernels) {
        let m = acts.rows;
        debug_assert_eq!(acts.blocks, self.blocks_per_row());
        debug_assert_eq!(out.len(), m * self.rows);
        let per_row = self.blocks_per_row();
        let groups = self.groups();
        // Four tasks per thread even out threads that start late.
        let per_task = groups
            .div_ceil(rayon::current_num_threads().max(1) * 4)
            .max(1);
        // Results by group, then activation row, then lane; scattered to
        // `out`'s row-major layout below.
        let mut by_group = vec![0f32; groups * m * LANES];
        by_group
            .par_chunks_mut(per_task * m * LANES)
            .enumerate()
            .for_each(|(task, chunk)| {
                let first = task * per_task;
                let n = chunk.len() / (m * LANES);
                let range = first * per_row..(first + n) * per_row;
                match &self.packed {
                    Packed::Q4(all) => {
                        if let Some(weights) = all.get(range) {
                            kernels.q4_groups(weights, per_row, acts, chunk);
                        }
                    }
                    Packed::Q8(all) => {
                        if let Some(weights) = all.get(range) {
                            kernels.q8_groups(weights, per_row, acts, chunk);
                        }
                    }
                }
            });
        for (g, results) in by_group.chunks_exact(m * LANES).enumerate() {
            for (i, lanes) in results.chunks_exact(LANES).enumerate() {
                let start = i * self.rows + g * LANES;
                let end = (start + LANES).min((i + 1) * self.rows);
                if let Some(dst) = out.get_mut(start..end) {
                    let len = dst.len();
                    dst.copy_from_slice(lanes.get(..len).unwrap_or_default());
                }
            }
        }
    }
}

/// Quantizes 32 values to `i8` with one scale (symmetric, largest
/// magnitude to ±127, ties to even); returns the scale.
#[inline(always)]
fn quantize_block(block: &[f32], q: &mut [i8; BLOCK]) -> f32 {
    let amax = block.iter().fold(0f32, |a, v| a.max(v.abs()));
    let d = amax / 127.0;
    let id = if d == 0.0 { 0.0 } else { 1.0 / d };
    for (dst, &v) in q.iter_mut().zip(block) {
        // In range by construction: |v × id| ≤ 127. `as` saturates NaN to 0.
        *dst = (v * id).round_ties_even() as i8;
    }
    d
}

/// Activations quantized per block: the right-hand side of every product.
pub(crate) struct QActs {
    rows: usize,
    blocks: usize,
    q: Vec<[i8; BLOCK]>,
    /// Scale per block.
    d: Vec<f32>,
    /// Scale × sum of the block's quantized values, for Q4's offsets.
    s: Vec<f32>,
}

impl QActs {
    /// Quantizes `x`, `rows` rows of `cols` values (`cols` a multiple of
    /// [`BLOCK`]).
    pub(crate) fn quantize(x: &[f32], cols: usize, kernels: Kernels) -> Self {
        match kernels.avx2 {
            // Compiled with AVX2 on, the rounding is one instruction, not
            // a libm call per value.
            Some(simd) => simd.vectorize(|| Self::quantize_with(x, cols)),
            None => Self::quantize_with(x, cols),
        }
    }

    #[inline(always)]
    fn quantize_with(x: &[f32], cols: usize) -> Self {
        let blocks = cols / BLOCK;
        let n = x.len() / BLOCK;
        let mut acts = Self {
            rows: x.len().checked_div(cols).unwrap_or(0),
            blocks,
            q: vec![[0; BLOCK]; n],
            d: vec![0.0; n],
            s: vec![0.0; n],
        };
        for (((block, q), d), s) in x
            .chunks_exact(BLOCK)
            .zip(&mut acts.q)
            .zip(&mut acts.d)
            .zip(&mut acts.s)
        {
            *d = quantize_block(block, q);
            *s = *d * q.iter().map(|&v| f32::from(v)).sum::<f32>();
        }
        acts
    }

    #[inline(always)]
    fn row(&self, i: usize) -> ActRow<'_> {
        let r = i * self.blocks..(i + 1) * self.blocks;
        ActRow {
            q: self.q.get(r.clone()).unwrap_or_default(),
            d: self.d.get(r.clone()).unwrap_or_default(),
            s: self.s.get(r).unwrap_or_default(),
        }
    }
}

/// One activation row's blocks.
#[derive(Clone, Copy)]
struct ActRow<'a> {
    q: &'a [[i8; BLOCK]],
    d: &'a [f32],
    s: &'a [f32],
}

/// Which kernels this CPU runs, detected once.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Kernels {
    avx2: Option<V3>,
}

impl Kernels {
    /// The fastest this CPU supports.
    pub(crate) fn detect() -> Self {
        Self {
            avx2: V3::try_new(),
        }
    }

    /// The portable kernels only: the reference the SIMD ones are tested
    /// against.
    #[cfg(test)]
    pub(crate) fn scalar() -> Self {
        Self { avx2: None }
    }

    /// A name for logs.
    pub(crate) fn name(self) -> &'static str {
        if self.avx2.is_some() {
            "AVX2"
        } else {
            "scalar"
        }
    }

    /// Fills `out` (group, activation row, lane) for consecutive groups of
    /// `per_row` blocks each.
    fn q4_groups(self, weights: &[Q4Group], per_row: usize, acts: &QActs, out: &mut [f32]) {
        match self.avx2 {
            Some(simd) => simd.vectorize(Products {
                weights,
                per_row,
                acts,
                out,
                dot: |g: &[Q4Group], a: ActRow<'_>| q4_dot4_avx2(simd, g, a),
            }),
            None => each_group(weights, per_row, acts, out, q4_dot4_scalar),
        }
    }

    fn q8_groups(self, weights: &[Q8Group], per_row: usize, acts: &QActs, out: &mut [f32]) {
        match self.avx2 {
            Some(simd) => simd.vectorize(Products {
                weights,
                per_row,
                acts,
                out,
                dot: |g: &[Q8Group], a: ActRow<'_>| q8_dot4_avx2(simd, g, a),
            }),
            None => each_group(weights, per_row, acts, out, q8_dot4_scalar),
        }
    }
}

/// A run of products for `pulp` to execute with its target features on.
/// A plain closure would do, but rustc may compile a closure as a separate
/// function without those features, turning every intrinsic into a call;
/// `#[inline(always)]` on [`pulp::NullaryFnOnce::call`] keeps the whole
/// loop inside the feature-enabled frame.
struct Products<'a, G, D> {
    weights: &'a [G],
    per_row: usize,
    acts: &'a QActs,
    out: &'a mut [f32],
    dot: D,
}

impl<G, D: Fn(&[G], ActRow<'_>) -> [f32; LANES]> pulp::NullaryFnOnce for Products<'_, G, D> {
    type Output = ();

    #[inline(always)]
    fn call(self) {
        each_group(self.weights, self.per_row, self.acts, self.out, self.dot);
    }
}

#[inline(always)]
fn each_group<G>(
    weights: &[G],
    per_row: usize,
    acts: &QActs,
    out: &mut [f32],
    dot: impl Fn(&[G], ActRow<'_>) -> [f32; LANES],
) {
    let m = acts.rows;
    for (group, results) in weights
        .chunks_exact(per_row)
        .zip(out.chunks_exact_mut(m * LANES))
    {
        for (i, lanes) in results.chunks_exact_mut(LANES).enumerate() {
            lanes.copy_from_slice(&dot(group, acts.row(i)));
        }
    }
}

fn q4_dot4_scalar(group: &[Q4Group], act: ActRow<'_>) -> [f32; LANES] {
    let mut out = [0f32; LANES];
    for (((g, aq), &ad), &asum) in group.iter().zip(act.q).zip(act.d).zip(act.s) {
        for (((o, qs), &d), &m) in out.iter_mut().zip(&g.qs).zip(&g.d).zip(&g.m) {
            let (lo, hi) = aq.split_at(16);
            let isum: i32 = qs
                .iter()
                .zip(lo)
                .zip(hi)
                .map(|((&q, &a0), &a1)| {
                    i32::from(q & 0x0f) * i32::from(a0) + i32::from(q >> 4) * i32::from(a1)
                })
                .sum();
            *o += d * ad * isum as f32 + m * asum;
        }
    }
    out
}

fn q8_dot4_scalar(group: &[Q8Group], act: ActRow<'_>) -> [f32; LANES] {
    let mut out = [0f32; LANES];
    for ((g, aq), &ad) in group.iter().zip(act.q).zip(act.d) {
        for ((o, qs), &d) in out.iter_mut().zip(&g.qs).zip(&g.d) {
            let isum: i32 = qs
                .iter()
                .zip(aq)
                .map(|(&w, &a)| i32::from(w) * i32::from(a))
                .sum();
            *o += d * ad * isum as f32;
        }
    }
    out
}

/// Adds up the eight lanes of each accumulator.
#[inline(always)]
fn horizontal_sums(acc: [core::arch::x86_64::__m256; LANES]) -> [f32; LANES] {
    acc.map(|a| {
        let lanes: [f32; 8] = pulp::cast(a);
        lanes.iter().sum()
    })
}

#[inline(always)]
fn q4_dot4_avx2(simd: V3, group: &[Q4Group], act: ActRow<'_>) -> [f32; LANES] {
    let low_nibbles = simd.avx._mm256_set1_epi8(0x0f);
    let ones = simd.avx._mm256_set1_epi16(1);
    let mut acc = [simd.avx._mm256_setzero_ps(); LANES];
    let mut offsets: __m128 = simd.sse._mm_setzero_ps();
    for (((g, aq), &ad), &asum) in group.iter().zip(act.q).zip(act.d).zip(act.s) {
        let a: __m256i = pulp::cast(*aq);
        let scales: [f32; LANES] = pulp::cast(
            simd.sse
                ._mm_mul_ps(pulp::cast(g.d), simd.sse._mm_set1_ps(ad)),
        );
        for ((acc, qs), scale) in acc.iter_mut().zip(&g.qs).zip(scales) {
            let packed: __m128i = pulp::cast(*qs);
            let high = simd.sse2._mm_srli_epi16::<4>(packed);
            let w = simd
                .avx2
                ._mm256_and_si256(simd.avx._mm256_set_m128i(high, packed), low_nibbles);
            // u8 × i8 pairs: |15 × 127 × 2| fits the i16 lanes.
            let pairs = simd.avx2._mm256_maddubs_epi16(w, a);
            let sums = simd
                .avx
                ._mm256_cvtepi32_ps(simd.avx2._mm256_madd_epi16(pairs, ones));
            *acc = simd
                .fma
                ._mm256_fmadd_ps(sums, simd.avx._mm256_set1_ps(scale), *acc);
        }
        offsets = simd
            .fma
            ._mm_fmadd_ps(pulp::cast(g.m), simd.sse._mm_set1_ps(asum), offsets);
    }
    let offsets: [f32; LANES] = pulp::cast(offsets);
    let mut out = horizontal_sums(acc);
    for (o, off) in out.iter_mut().zip(offsets) {
        *o += off;
    }
    out
}

#[inline(always)]
fn q8_dot4_avx2(simd: V3, group: &[Q8Group], act: ActRow<'_>) -> [f32; LANES] {
    let ones = simd.avx._mm256_set1_epi16(1);
    let mut acc = [simd.avx._mm256_setzero_ps(); LANES];
    for ((g, aq), &ad) in group.iter().zip(act.q).zip(act.d) {
        let a: __m256i = pulp::cast(*aq);
        let scales: [f32; LANES] = pulp::cast(
            simd.sse
                ._mm_mul_ps(pulp::cast(g.d), simd.sse._mm_set1_ps(ad)),
        );
        for ((acc, qs), scale) in acc.iter_mut().zip(&g.qs).zip(scales) {
            let w: __m256i = pulp::cast(*qs);
            // maddubs takes one unsigned operand: |w| × (a with w's sign).
            // |w| ≤ 128 and |a| ≤ 127, so pairs fit the i16 lanes.
            let pairs = simd.avx2._mm256_maddubs_epi16(
                simd.avx2._mm256_abs_epi8(w),
                simd.avx2._mm256_sign_epi8(a, w),
            );
            let sums = simd
                .avx
                ._mm256_cvtepi32_ps(simd.avx2._mm256_madd_epi16(pairs, ones));
            *acc = simd
                .fma
                ._mm256_fmadd_ps(sums, simd.avx._mm256_set1_ps(scale), *acc);
        }
    }
    horizontal_sums(acc)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing)]

    use candle_core::quantized::{GgmlDType, QTensor};
    use candle_core::{Device, Tensor};

    use super::*;

    /// Deterministic values in [-1, 1) with a few large ones, like weights.
    fn values(n: usize, seed: u32) -> Vec<f32> {
        let mut x = seed.wrapping_mul(2_654_435_761).max(1);
        (0..n)
            .map(|i| {
                x ^= x << 13;
                x ^= x >> 17;
                x ^= x << 5;
                let v = (x as f32 / u32::MAX as f32) * 2.0 - 1.0;
                if i % 37 == 0 {
                    v * 4.0
                } else {
                    v
                }
            })
            .collect()
    }

    /// `values` quantized by candle to `dtype`: its raw GGML blocks and
    /// what candle dequantizes them to.
    fn ggml(rows: usize, cols: usize, dtype: GgmlDType, seed: u32) -> (Vec<u8>, Vec<f32>) {
        let t = Tensor::from_vec(values(rows * cols, seed), (rows, cols), &Device::Cpu).unwrap();
        let q = QTensor::quantize(&t, dtype).unwrap();
        let raw = q.data().unwrap().into_owned();
        let back = q.dequantize(&Device::Cpu).unwrap();
        (raw, back.flatten_all().unwrap().to_vec1().unwrap())
    }

    fn pack(rows: usize, cols: usize, dtype: GgmlDType, raw: &[u8]) -> QMatrix {
        match dtype {
            GgmlDType::Q4_0 => QMatrix::from_q4_0(rows, cols, raw),
            GgmlDType::Q4_1 => QMatrix::from_q4_1(rows, cols, raw),
            GgmlDType::Q8_0 => QMatrix::from_q8_0(rows, cols, raw),
            _ => unreachable!(),
        }
        .unwrap()
    }

    const TYPES: [GgmlDType; 3] = [GgmlDType::Q4_0, GgmlDType::Q4_1, GgmlDType::Q8_0];

    #[test]
    fn packed_rows_dequantize_as_ggml_does() {
        // 10 rows: the last group is half padding.
        for dtype in TYPES {
            let (raw, expected) = ggml(10, 96, dtype, 3);
            let m = pack(10, 96, dtype, &raw);
            for r in 0..10 {
                assert_eq!(
                    m.row(r).unwrap(),
                    expected[r * 96..(r + 1) * 96],
                    "{dtype:?} row {r}"
                );
            }
            assert!(m.row(10).is_none());
        }
    }

    #[test]
    fn requantized_rows_stay_within_half_a_step() {
        let x = values(6 * 64, 9);
        let m = QMatrix::quantize_q8_0(6, 64, &x).unwrap();
        for (r, want) in x.chunks(64).enumerate() {
            let got = m.row(r).unwrap();
            for (block_got, block_want) in got.chunks(32).zip(want.chunks(32)) {
                let step = block_want.iter().fold(0f32, |a, v| a.max(v.abs())) / 127.0;
                for (g, w) in block_got.iter().zip(block_want) {
                    assert!((g - w).abs() <= step * 0.5 + 1e-6, "{g} vs {w}");
                }
            }
        }
    }

    /// The product against weights and activations both dequantized, in
    /// f64: what both kernels approximate only by summation order.
    fn reference(weights: &[f32], acts: &QActs, rows: usize, cols: usize) -> Vec<f32> {
        let mut out = Vec::new();
        for i in 0..acts.rows {
            let a = acts.row(i);
            let x: Vec<f64> =
                a.q.iter()
                    .zip(a.d)
                    .flat_map(|(q, &d)| q.iter().map(move |&v| f64::from(v) * f64::from(d)))
                    .collect();
            for r in 0..rows {
                let w = &weights[r * cols..(r + 1) * cols];
                out.push(
                    w.iter()
                        .zip(&x)
                        .map(|(&w, x)| f64::from(w) * x)
                        .sum::<f64>() as f32,
                );
            }
        }
        out
    }

    #[test]
    fn products_match_the_dequantized_reference_on_every_kernel() {
        let (rows, cols) = (10, 96);
        for dtype in TYPES {
            let (raw, weights) = ggml(rows, cols, dtype, 5);
            let m = pack(rows, cols, dtype, &raw);
            for batch in [1, 3] {
                let acts = QActs::quantize(&values(batch * cols, 11), cols, Kernels::scalar());
                let want = reference(&weights, &acts, rows, cols);
                for kernels in [Kernels::scalar(), Kernels::detect()] {
                    let mut got = vec![f32::NAN; batch * rows];
                    m.matmul(&acts, &mut got, kernels);
                    for (g, w) in got.iter().zip(&want) {
                        assert!(
                            (g - w).abs() <= 1e-4 * (1.0 + w.abs()),
                            "{dtype:?} {} batch {batch}: {g} vs {w}",
                            kernels.name()
                        );
                    }
                }
            }
        }
    }

    #[test]
    fn simd_and_scalar_activations_are_identical() {
        let x = values(3 * 64, 2);
        let a = QActs::quantize(&x, 64, Kernels::scalar());
        let b = QActs::quantize(&x, 64, Kernels::detect());
        assert_eq!(a.q, b.q);
        assert_eq!(a.d, b.d);
        assert_eq!(a.s, b.s);
    }

    #[test]
    fn malformed_tensors_are_refused() {
        let (raw, _) = ggml(4, 64, GgmlDType::Q4_1, 1);
        assert!(matches!(
            QMatrix::from_q4_1(4, 64, &raw[..raw.len() - 1]),
            Err(PackError::Size { .. })
        ));
        assert!(matches!(
            QMatrix::from_q4_1(4, 48, &raw),
            Err(PackError::Columns(48))
        ));
        // An infinite scale (f16 0x7c00) in the third block.
        let mut bad = raw.clone();
        bad[2 * 20..2 * 20 + 2].copy_from_slice(&0x7c00u16.to_le_bytes());
        assert!(matches!(
            QMatrix::from_q4_1(4, 64, &bad),
            Err(PackError::Scale(2))
        ));
        let mut nan = vec![0.5f32; 4 * 64];
        nan[70] = f32::NAN;
        assert!(matches!(
            QMatrix::quantize_q8_0(4, 64, &nan),
            Err(PackError::Weight(2))
        ));
    }
}
