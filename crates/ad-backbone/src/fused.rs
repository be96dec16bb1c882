//! EfficientNet-Lite inference on the CPU backend (flex) with fused epilogues.
//!
//! flex runs an MBConv block as separate passes over memory: every convolution allocates and
//! zero-fills its output, adds the bias in its own (single-threaded) pass, and ReLU6 is one more
//! pass; strided "SAME" convolutions first copy the input into a padded tensor. At 256 px the
//! activations (up to 96 x 128 x 128 floats) do not stay in cache, so those passes cost more
//! than the depthwise arithmetic. This module runs the blocks on host buffers that are reused
//! from image to image, with the same arithmetic in the same order as flex and the passes
//! fused:
//! - 1x1 expansion / head: the same `gemm` call as flex (no zero-fill: the product overwrites);
//!   the head's bias + ReLU6 in one pass, the expansion's applied to each plane as the
//!   depthwise copies it into its padded scratch (in cache, instead of one more pass over the
//!   largest activations);
//! - depthwise k x k: flex's accumulation (`acc = x * w + acc` over `kh`, then `kw`) on a
//!   zero-padded copy of the plane (adding a zero product leaves a sum unchanged, so this
//!   equals flex, which skips or pads those positions), 4 rows x 16 columns of outputs kept in
//!   registers (AVX-512, else AVX2, chosen at run time), stride-2 rows split into even and odd
//!   columns so that neighbouring outputs read neighbouring inputs; bias + ReLU6 before the
//!   store;
//! - 1x1 projection: the same `gemm`, then bias and the identity skip in one pass.
//!
//! The stem (3x3 stride 2 on 3 channels) is computed as flex computes a general convolution
//! (im2col tiles and `gemm`), without its NHWC copy, padded copy and separate passes. The
//! results are bit-identical to [`EfficientNet::forward_stages`](crate::efficientnet) on
//! flex (tested).

use burn::prelude::*;
use rayon::prelude::*;

use crate::efficientnet::EfficientNet;
use crate::layers::{FoldedConv, tf_same_pad};

/// flex's rule for a parallel `gemm` (its 1x1 convolution).
const PARALLEL_GEMM_WORK: usize = 192 * 192 * 192;

/// A 1x1 convolution on host memory: `W [out, in]`, bias `[out]`.
#[derive(Debug)]
struct Pointwise {
    weight: Vec<f32>,
    bias: Vec<f32>,
    out: usize,
    inp: usize,
}

/// A depthwise `k x k` convolution with TensorFlow "SAME" padding: `W [c, k, k]`, bias `[c]`.
#[derive(Debug)]
struct Depthwise {
    weight: Vec<f32>,
    bias: Vec<f32>,
    channels: usize,
    kernel: usize,
    stride: usize,
}

#[derive(Debug)]
struct Block {
    expand: Option<Pointwise>,
    depthwise: Depthwise,
    project: Pointwise,
    skip: bool,
}

/// Host copy of an EfficientNet-Lite's blocks (and head) for [`FusedLite::forward_stages`].
#[derive(Debug)]
pub(crate) struct FusedLite {
    stem: Stem,
    blocks: Vec<Block>,
    head: Option<Pointwise>,
}

/// flex's output columns per im2col tile of a general convolution.
const STEM_TILE: usize = 512;

/// The stem: a `k x k` convolution, stride `s`, "SAME" padding, on a few input channels,
/// computed as flex computes a general convolution (im2col tiles of 512 outputs with the
/// patch values ordered `kh, kw, c`, one `gemm` per tile), then bias + ReLU6.
#[derive(Debug)]
struct Stem {
    /// Weight `[out, k * k * in]`, the columns in `kh, kw, c` order.
    weight: Vec<f32>,
    bias: Vec<f32>,
    out: usize,
    inp: usize,
    kernel: usize,
    stride: usize,
}

impl Stem {
    fn new(conv: &FoldedConv) -> Option<Self> {
        let [out, inp, kernel, _] = conv.weight.dims();
        // flex sends small convolutions (<= 16 outputs on <= 4 inputs) down another path.
        if conv.groups != 1 || out <= 16 {
            return None;
        }
        let (w, bias) = host_params(conv)?;
        let kk = kernel * kernel;
        let mut weight = vec![0.0; out * inp * kk];
        for o in 0..out {
            for c in 0..inp {
                for k in 0..kk {
                    weight[o * inp * kk + k * inp + c] = w[(o * inp + c) * kk + k];
                }
            }
        }
        Some(Self {
            weight,
            bias,
            out,
            inp,
            kernel,
            stride: conv.stride,
        })
    }

    /// `x [in, h, w]` -> `dst [out, ceil(h / s), ceil(w / s)]`; `col` is scratch.
    fn forward(
        &self,
        x: &[f32],
        (h, w): (usize, usize),
        dst: &mut [f32],
        col: &mut Vec<f32>,
        tile: &mut Vec<f32>,
    ) {
        let (k, s, cin) = (self.kernel, self.stride, self.inp);
        let (oh, ow) = (h.div_ceil(s), w.div_ceil(s));
        let (top, _) = tf_same_pad(h, k, s);
        let (left, _) = tf_same_pad(w, k, s);
        let len = k * k * cin;
        let spatial = oh * ow;
        ensure(col, STEM_TILE * len);
        ensure(tile, self.out * STEM_TILE);
        for start in (0..spatial).step_by(STEM_TILE) {
            let n = STEM_TILE.min(spatial - start);
            let col = &mut col[..n * len];
            for (j, patch) in col.chunks_mut(len).enumerate() {
                let (r, c) = ((start + j) / ow, (start + j) % ow);
                let mut at = 0;
                for kh in 0..k {
                    let ih = (r * s + kh).checked_sub(top).filter(|&i| i < h);
                    for kw in 0..k {
                        let iw = (c * s + kw).checked_sub(left).filter(|&i| i < w);
                        for ch in 0..cin {
                            patch[at] = match (ih, iw) {
                                (Some(ih), Some(iw)) => x[(ch * h + ih) * w + iw],
                                _ => 0.0,
                            };
                            at += 1;
                        }
                    }
                }
            }
            let tile = &mut tile[..self.out * n];
            // SAFETY: `tile` holds out x n, the weight out x len (row-major) and `col`
            // n x len (read as its transpose, len x n).
            unsafe {
                gemm::gemm(
                    self.out,
                    n,
                    len,
                    tile.as_mut_ptr(),
                    1,
                    n as isize,
                    false,
                    self.weight.as_ptr(),
                    1,
                    len as isize,
                    col.as_ptr(),
                    len as isize,
                    1,
                    0.0f32,
                    1.0f32,
                    false,
                    false,
                    false,
                    gemm::Parallelism::None,
                );
            }
            for (o, row) in tile.chunks(n).enumerate() {
                dst[o * spatial + start..o * spatial + start + n].copy_from_slice(row);
            }
        }
        bias_relu6(&mut dst[..self.out * spatial], spatial, &self.bias);
    }
}

/// A tensor's values as `f32` (`None` only if the conversion fails). This module runs only on
/// flex, whose tensors are host memory: a copy, never a device transfer (so it is outside
/// `ad_core::tensor`'s counted read-backs; `tests/device_path.rs` lists the file).
pub(crate) fn host<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().ok()
}

/// A folded convolution's weight and bias on the host.
fn host_params(conv: &FoldedConv) -> Option<(Vec<f32>, Vec<f32>)> {
    Some((host(conv.weight.val())?, host(conv.bias.val())?))
}

impl Pointwise {
    fn new(conv: &FoldedConv) -> Option<Self> {
        let [out, inp, _, _] = conv.weight.dims();
        let (weight, bias) = host_params(conv)?;
        Some(Self {
            weight,
            bias,
            out,
            inp,
        })
    }

    /// `dst [out, n] = W x [in, n]` with flex's `gemm` call (`dst` is overwritten).
    fn product(&self, x: &[f32], n: usize, dst: &mut [f32], parallel: bool) {
        let (m, k) = (self.out, self.inp);
        debug_assert!(x.len() >= k * n && dst.len() >= m * n && self.weight.len() == m * k);
        let parallelism = if parallel && m.saturating_mul(n).saturating_mul(k) >= PARALLEL_GEMM_WORK
        {
            gemm::Parallelism::Rayon(0)
        } else {
            gemm::Parallelism::None
        };
        // SAFETY: `dst` holds m x n, `W` m x k and `x` k x n row-major values (checked above
        // in debug builds and guaranteed by the buffer sizes chosen in `forward_image`).
        unsafe {
            gemm::gemm(
                m,
                n,
                k,
                dst.as_mut_ptr(),
                1,
                n as isize,
                false,
                self.weight.as_ptr(),
                1,
                k as isize,
                x.as_ptr(),
                1,
                n as isize,
                0.0f32,
                1.0f32,
                false,
                false,
                false,
                parallelism,
            );
        }
    }
}

/// Columns of the depthwise kernel's register block (one AVX-512 vector).
const LANES: usize = 16;
/// Output rows computed together (independent accumulator chains).
const ROWS: usize = 4;

/// Compile `$body` three times, for AVX-512, AVX2 and the baseline, and call the best one
/// the CPU has (the same operations in the same order in each, so the same results).
macro_rules! dispatch {
    ($(#[$doc:meta])* fn $name:ident($($arg:ident: $ty:ty),* $(,)?) => $body:ident) => {
        $(#[$doc])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx512f")]
                unsafe fn avx512($($arg: $ty),*) {
                    $body($($arg),*)
                }
                #[target_feature(enable = "avx2")]
                unsafe fn avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if std::arch::is_x86_feature_detected!("avx512f") {
                    // SAFETY: the CPU supports AVX-512F (checked at run time).
                    return unsafe { avx512($($arg),*) };
                }
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: the CPU supports AVX2 (checked at run time).
                    return unsafe { avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}

/// flex's bias + ReLU6 of one value, `clamp(v + b, 0, 6)`: the one definition both epilogues
/// (a pass over planes, and the depthwise copy) use, so they stay bit-identical.
#[inline(always)]
fn bias_relu6_value(v: f32, b: f32) -> f32 {
    (v + b).clamp(0.0, 6.0)
}

#[inline(always)]
fn bias_relu6_body(planes: &mut [f32], n: usize, bias: &[f32]) {
    for (plane, &b) in planes.chunks_mut(n).zip(bias) {
        for v in plane {
            *v = bias_relu6_value(*v, b);
        }
    }
}

dispatch! {
    /// `v = clamp(v + b[c], 0, 6)` over planes of `n` values, one per channel `c`.
    fn bias_relu6(planes: &mut [f32], n: usize, bias: &[f32]) => bias_relu6_body
}

#[inline(always)]
fn bias_skip_body(planes: &mut [f32], n: usize, bias: &[f32], skip: Option<&[f32]>) {
    match skip {
        Some(skip) => {
            for ((plane, &b), from) in planes.chunks_mut(n).zip(bias).zip(skip.chunks(n)) {
                for (v, &x) in plane.iter_mut().zip(from) {
                    *v = (*v + b) + x;
                }
            }
        }
        None => {
            for (plane, &b) in planes.chunks_mut(n).zip(bias) {
                for v in plane {
                    *v += b;
                }
            }
        }
    }
}

dispatch! {
    /// `v = (v + b[c]) + skip` (or `v + b[c]`) over planes of `n` values.
    fn bias_skip(planes: &mut [f32], n: usize, bias: &[f32], skip: Option<&[f32]>) => bias_skip_body
}

/// One depthwise plane's geometry.
#[derive(Clone, Copy)]
struct PlaneShape {
    kernel: usize,
    stride: usize,
    h: usize,
    w: usize,
}

impl PlaneShape {
    fn out(&self) -> (usize, usize) {
        (self.h.div_ceil(self.stride), self.w.div_ceil(self.stride))
    }

    /// Output columns rounded up to whole register blocks.
    fn padded_out_w(&self) -> usize {
        self.out().1.div_ceil(LANES) * LANES
    }

    /// Length of one stride phase of a padded input row.
    fn phase_len(&self) -> usize {
        self.padded_out_w() + (self.kernel - 1) / self.stride
    }

    /// Rows of the padded input that the outputs read.
    fn padded_rows(&self) -> usize {
        (self.out().0 - 1) * self.stride + self.kernel
    }

    fn scratch_len(&self) -> usize {
        self.padded_rows() * self.stride * self.phase_len()
    }
}

/// Copy one input plane into `pad`, zero-padded as TensorFlow "SAME" pads it, each row split
/// into `stride` phases (phase `p` holds padded columns `p, p + s, p + 2s, ...`) so that the
/// inputs of consecutive outputs are consecutive. With `act = Some(b)` every copied value is
/// first activated as the expansion's epilogue would have done it ([`bias_relu6_value`])
/// (the plane is in cache here; a separate pass would read and write the whole expansion).
#[inline(always)]
fn pad_plane(x: &[f32], g: PlaneShape, act: Option<f32>, pad: &mut [f32]) {
    let f = |v: f32| match act {
        Some(b) => bias_relu6_value(v, b),
        None => v,
    };
    let (k, s) = (g.kernel, g.stride);
    let (top, _) = tf_same_pad(g.h, k, s);
    let (left, _) = tf_same_pad(g.w, k, s);
    let pw = g.phase_len();
    let row_len = s * pw;
    pad.fill(0.0);
    for r in 0..g.padded_rows() {
        let Some(ih) = r.checked_sub(top).filter(|&i| i < g.h) else {
            continue;
        };
        let src = &x[ih * g.w..(ih + 1) * g.w];
        let dst = &mut pad[r * row_len..(r + 1) * row_len];
        if s == 1 {
            let n = g.w.min(pw - left);
            match act {
                Some(_) => {
                    for (d, &v) in dst[left..left + n].iter_mut().zip(&src[..n]) {
                        *d = f(v);
                    }
                }
                None => dst[left..left + n].copy_from_slice(&src[..n]),
            }
        } else if s == 2 {
            // Column j goes to padded column j + left: even j to phase `left % 2` at
            // j / 2 + left / 2, odd j to the other phase at j / 2 + left / 2 + left % 2.
            let (phase0, phase1) = dst.split_at_mut(pw);
            let (first, second) = if left % 2 == 0 {
                (phase0, phase1)
            } else {
                (phase1, phase0)
            };
            let (half, odd) = (left / 2, left % 2);
            for (d, &v) in first[half..].iter_mut().zip(src.iter().step_by(2)) {
                *d = f(v);
            }
            for (d, &v) in second[half + odd..]
                .iter_mut()
                .zip(src.iter().skip(1).step_by(2))
            {
                *d = f(v);
            }
        } else {
            for (j, &v) in src.iter().enumerate() {
                let pc = j + left;
                let idx = pc / s;
                if idx < pw {
                    dst[(pc % s) * pw + idx] = f(v);
                }
            }
        }
    }
}

/// `R` output rows from `o_row` of one register block of columns from `o0`:
/// `acc = x * w + acc` over `kh`, then `kw` (flex's order; padding adds exact zeros), then
/// `clamp(acc + b, 0, 6)`.
#[inline(always)]
#[allow(clippy::too_many_arguments)]
fn depthwise_block<const R: usize>(
    pad: &[f32],
    g: PlaneShape,
    wt: &[f32],
    bias: f32,
    o_row: usize,
    o0: usize,
    out: &mut [f32],
    ow: usize,
) {
    let (k, s) = (g.kernel, g.stride);
    let pw = g.phase_len();
    let row_len = s * pw;
    let mut acc = [[0.0f32; LANES]; R];
    for kh in 0..k {
        for kw in 0..k {
            let wv = wt[kh * k + kw];
            let base = (kw % s) * pw + o0 + kw / s;
            for (r, a) in acc.iter_mut().enumerate() {
                let at = ((o_row + r) * s + kh) * row_len + base;
                let src = &pad[at..at + LANES];
                for (a, &v) in a.iter_mut().zip(src) {
                    *a += v * wv;
                }
            }
        }
    }
    for (r, a) in acc.iter().enumerate() {
        let row = &mut out[(o_row + r) * ow..(o_row + r + 1) * ow];
        let n = LANES.min(ow - o0);
        for (o, &v) in row[o0..o0 + n].iter_mut().zip(a) {
            *o = (v + bias).clamp(0.0, 6.0);
        }
    }
}

#[inline(always)]
fn depthwise_plane_body(
    x: &[f32],
    g: PlaneShape,
    act: Option<f32>,
    wt: &[f32],
    bias: f32,
    out: &mut [f32],
    pad: &mut [f32],
) {
    let (oh, ow) = g.out();
    pad_plane(x, g, act, pad);
    let full = oh - oh % ROWS;
    for o0 in (0..ow).step_by(LANES) {
        for o_row in (0..full).step_by(ROWS) {
            depthwise_block::<ROWS>(pad, g, wt, bias, o_row, o0, out, ow);
        }
        for o_row in full..oh {
            depthwise_block::<1>(pad, g, wt, bias, o_row, o0, out, ow);
        }
    }
}

dispatch! {
    /// One depthwise channel: `out [oh, ow] = clamp(conv(act(x [h, w])) + b, 0, 6)`, with
    /// `pad` ([`PlaneShape::scratch_len`] values) for the padded input and `act` as in
    /// [`pad_plane`].
    fn depthwise_plane(
        x: &[f32],
        g: PlaneShape,
        act: Option<f32>,
        wt: &[f32],
        bias: f32,
        out: &mut [f32],
        pad: &mut [f32],
    ) => depthwise_plane_body
}

thread_local! {
    /// The padded input plane of [`depthwise_plane`], one per thread.
    static SCRATCH: std::cell::RefCell<Vec<f32>> = const { std::cell::RefCell::new(Vec::new()) };
}

impl Depthwise {
    fn new(conv: &FoldedConv) -> Option<Self> {
        let [channels, _, kernel, _] = conv.weight.dims();
        let (weight, bias) = host_params(conv)?;
        Some(Self {
            weight,
            bias,
            channels,
            kernel,
            stride: conv.stride,
        })
    }

    fn out_size(&self, input: usize) -> usize {
        input.div_ceil(self.stride)
    }

    /// One channel: `out [oh, ow] = clamp(conv(act(x [h, w])) + b, 0, 6)`, `act` as in
    /// [`pad_plane`].
    fn plane(
        &self,
        c: usize,
        x: &[f32],
        act: Option<f32>,
        (h, w): (usize, usize),
        out: &mut [f32],
    ) {
        let k = self.kernel;
        let g = PlaneShape {
            kernel: k,
            stride: self.stride,
            h,
            w,
        };
        let wt = &self.weight[c * k * k..(c + 1) * k * k];
        SCRATCH.with(|cell| {
            let mut pad = cell.borrow_mut();
            let len = g.scratch_len();
            if pad.len() < len {
                pad.resize(len, 0.0);
            }
            depthwise_plane(x, g, act, wt, self.bias[c], out, &mut pad[..len]);
        });
    }
}

/// Buffers reused from image to image (one set per thread).
#[derive(Default)]
struct Workspace {
    /// Block input / output (ping-pong).
    a: Vec<f32>,
    b: Vec<f32>,
    /// Expanded activations.
    expanded: Vec<f32>,
    /// Depthwise output.
    depthwise: Vec<f32>,
    /// The stem's im2col tile and its product.
    col: Vec<f32>,
    tile: Vec<f32>,
}

fn ensure(buf: &mut Vec<f32>, len: usize) {
    if buf.len() < len {
        buf.resize(len, 0.0);
    }
}

impl FusedLite {
    /// Copy the blocks' (and head's) folded weights to the host.
    pub(crate) fn new(net: &EfficientNet) -> Option<Self> {
        let blocks = net
            .blocks
            .iter()
            .map(|b| {
                Some(Block {
                    expand: match &b.expand {
                        Some(e) => Some(Pointwise::new(e)?),
                        None => None,
                    },
                    depthwise: Depthwise::new(&b.depthwise)?,
                    project: Pointwise::new(&b.project)?,
                    skip: b.skip,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        let head = match &net.head {
            Some(h) => Some(Pointwise::new(h)?),
            None => None,
        };
        Some(Self {
            stem: Stem::new(&net.stem)?,
            blocks,
            head,
        })
    }

    /// Run blocks `1..=last` (and the head when `last` is past the blocks) on one image's stem
    /// output `[C, h, w]`, appending the maps of `stages` to `taps[i]` (stage 0, the stem, is
    /// copied as it is).
    fn forward_image(
        &self,
        image: &[f32],
        (in_h, in_w): (usize, usize),
        stages: &[usize],
        taps: &mut [Vec<f32>],
        ws: &mut Workspace,
        parallel: bool,
    ) {
        let last = stages.iter().copied().max().unwrap_or(0);
        let keep = |s: usize, data: &[f32], taps: &mut [Vec<f32>]| {
            for (slot, &want) in taps.iter_mut().zip(stages) {
                if want == s {
                    slot.extend_from_slice(data);
                }
            }
        };
        let stem = &self.stem;
        let (mut h, mut w) = (in_h.div_ceil(stem.stride), in_w.div_ceil(stem.stride));
        let mut channels = stem.out;
        ensure(&mut ws.a, channels * h * w);
        stem.forward(image, (in_h, in_w), &mut ws.a, &mut ws.col, &mut ws.tile);
        keep(0, &ws.a[..channels * h * w], taps);
        for (i, block) in self.blocks.iter().enumerate() {
            if i + 1 > last {
                break;
            }
            let n = h * w;
            let input = &ws.a[..channels * n];
            // Expansion: gemm; its bias + ReLU6 are applied as the depthwise pads each plane.
            let (expanded, act): (&[f32], Option<&[f32]>) = match &block.expand {
                Some(e) => {
                    ensure(&mut ws.expanded, e.out * n);
                    let dst = &mut ws.expanded[..e.out * n];
                    e.product(input, n, dst, parallel);
                    (dst, Some(&e.bias))
                }
                None => (input, None),
            };
            let act_of = |c: usize| act.map(|b| b[c]);
            // Depthwise, one fused plane per channel.
            let dw = &block.depthwise;
            let (oh, ow) = (dw.out_size(h), dw.out_size(w));
            let m = oh * ow;
            ensure(&mut ws.depthwise, dw.channels * m);
            let dst = &mut ws.depthwise[..dw.channels * m];
            if parallel {
                dst.par_chunks_mut(m).enumerate().for_each(|(c, out)| {
                    dw.plane(c, &expanded[c * n..(c + 1) * n], act_of(c), (h, w), out)
                });
            } else {
                for (c, out) in dst.chunks_mut(m).enumerate() {
                    dw.plane(c, &expanded[c * n..(c + 1) * n], act_of(c), (h, w), out);
                }
            }
            // Projection: gemm, then bias (+ the identity skip).
            let p = &block.project;
            ensure(&mut ws.b, p.out * m);
            let out = &mut ws.b[..p.out * m];
            p.product(&ws.depthwise[..dw.channels * m], m, out, parallel);
            let skip = block.skip.then(|| &ws.a[..p.out * m]);
            bias_skip(out, m, &p.bias, skip);
            std::mem::swap(&mut ws.a, &mut ws.b);
            (h, w, channels) = (oh, ow, p.out);
            keep(i + 1, &ws.a[..channels * m], taps);
        }
        let head_stage = self.blocks.len() + 1;
        if last >= head_stage
            && let Some(head) = &self.head
        {
            let n = h * w;
            ensure(&mut ws.b, head.out * n);
            let out = &mut ws.b[..head.out * n];
            head.product(&ws.a[..channels * n], n, out, parallel);
            bias_relu6(out, n, &head.bias);
            keep(head_stage, out, taps);
        }
    }

    /// Output `(channels, h, w)` of every stage for an input of `h x w` pixels.
    fn stage_shapes(&self, stem_channels: usize, (h, w): (usize, usize)) -> Vec<[usize; 3]> {
        let s = self.stem.stride;
        let (mut h, mut w) = (h.div_ceil(s), w.div_ceil(s));
        let mut shapes = vec![[stem_channels, h, w]];
        for b in &self.blocks {
            (h, w) = (b.depthwise.out_size(h), b.depthwise.out_size(w));
            shapes.push([b.project.out, h, w]);
        }
        if let Some(head) = &self.head {
            shapes.push([head.out, h, w]);
        }
        shapes
    }

    /// [`EfficientNet::forward_stages`] on flex, bit-identical, with the fused blocks. A batch
    /// of several images is split across the rayon threads (one image at a time per thread,
    /// each with its own buffers); a single image runs with parallel operations.
    ///
    /// `None` only if the stem's output cannot be read as `f32`.
    ///
    /// # Shapes
    /// `x`: `[B, 3, H, W]`; output `i`: `[B, C_s, H_s, W_s]` of stage `stages[i]`.
    pub(crate) fn forward_stages(&self, x: Tensor<4>, stages: &[usize]) -> Option<Vec<Tensor<4>>> {
        let device = x.device();
        let [batch, channels, height, width] = x.dims();
        if channels != self.stem.inp {
            return None;
        }
        let shapes = self.stage_shapes(self.stem.out, (height, width));
        let pixels = host(x)?;
        let per_image = channels * height * width;
        let threads = rayon::current_num_threads().max(1);
        let workers = threads.min(batch).max(1);
        let run_chunk = |images: &[f32], parallel: bool| -> Vec<Vec<f32>> {
            let count = images.len() / per_image.max(1);
            let mut taps: Vec<Vec<f32>> = stages
                .iter()
                .map(|&s| Vec::with_capacity(count * shapes[s].iter().product::<usize>()))
                .collect();
            let mut ws = Workspace::default();
            for img in images.chunks(per_image) {
                self.forward_image(img, (height, width), stages, &mut taps, &mut ws, parallel);
            }
            taps
        };
        let mut parts: Vec<Vec<Vec<f32>>> = if workers < 2 {
            vec![run_chunk(&pixels, true)]
        } else {
            // The same chunks as `Tensor::chunk`: ceil(batch / workers) images each.
            pixels
                .par_chunks(batch.div_ceil(workers) * per_image)
                .map(|part| run_chunk(part, false))
                .collect()
        };
        let maps = stages
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let [c, h, w] = shapes[s];
                let data = if let [one] = &mut parts[..] {
                    // One part (a single worker): its maps are the batch's, no copy.
                    std::mem::take(&mut one[i])
                } else {
                    let mut data = Vec::with_capacity(batch * c * h * w);
                    for p in &parts {
                        data.extend_from_slice(&p[i]);
                    }
                    data
                };
                Tensor::from_data(TensorData::new(data, [batch, c, h, w]), &device)
            })
            .collect();
        Some(maps)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Backbone, BackboneKind};

    fn image(batch: usize, h: usize, w: usize, device: &Device) -> Tensor<4> {
        let data: Vec<f32> = (0..batch * 3 * h * w)
            .map(|i| ((i as f32) * 0.37).sin() * 2.0)
            .collect();
        Tensor::from_data(TensorData::new(data, [batch, 3, h, w]), device)
    }

    fn bits(t: Tensor<4>) -> (Vec<usize>, Vec<u32>) {
        let dims = t.dims().to_vec();
        let v = host(t).unwrap_or_default();
        (dims, v.into_iter().map(f32::to_bits).collect())
    }

    /// The fused path against Burn's operations, bit for bit: batch 1 (parallel operations)
    /// and 2-3 (images across threads), odd sizes (asymmetric "SAME" padding), every kind of
    /// stage (stem, strided and skip blocks, head), and at 160 px products large enough for
    /// flex to split its `gemm` across threads where the fused path does not.
    #[test]
    fn fused_blocks_are_bit_identical_to_burn() {
        let device = Device::flex();
        for (kind, taps) in [
            (
                BackboneKind::EfficientNetLite0,
                vec!["blocks.4", "blocks.10"],
            ),
            (
                BackboneKind::EfficientNetLite0,
                vec!["head", "stem", "blocks.1"],
            ),
            (
                BackboneKind::EfficientNetLite1,
                vec!["blocks.3", "blocks.6"],
            ),
        ] {
            let bb = Backbone::random(kind, &taps, 3, &device).unwrap();
            for (batch, h, w) in [(1, 64, 64), (3, 45, 58), (2, 33, 31), (2, 160, 160)] {
                let x = image(batch, h, w, &device);
                let fast = bb.forward(x.clone());
                let slow = bb.forward_unsplit(x);
                assert_eq!(fast.len(), taps.len());
                for ((a, b), tap) in fast.into_iter().zip(slow).zip(&taps) {
                    let (da, va) = bits(a);
                    let (db, vb) = bits(b);
                    assert_eq!(da, db, "{kind} {tap} {batch}x{h}x{w}");
                    let differ = va.iter().zip(&vb).filter(|(p, q)| p != q).count();
                    assert_eq!(
                        differ, 0,
                        "{kind} {tap} {batch}x{h}x{w}: {differ} values differ"
                    );
                }
            }
        }
    }
}
