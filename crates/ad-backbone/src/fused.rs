//! EfficientNet-Lite inference on the CPU backend (flex) with fused epilogues.
//!
//! flex runs an MBConv block as separate passes over memory: every convolution allocates and
//! zero-fills its output, adds the bias in its own (single-threaded) pass, and ReLU6 is one more
//! pass; strided "SAME" convolutions first copy the input into a padded tensor. At 256 px the
//! activations (up to 96 x 128 x 128 floats) do not stay in cache, so those passes cost more
//! than the depthwise arithmetic. This module runs the blocks on host buffers that are reused
//! from image to image, with the same arithmetic in the same order as flex and the passes
//! fused:
//! - 1x1 expansion / head: the same `gemm` call as flex (no zero-fill: the product overwrites),
//!   then bias + ReLU6 in one pass;
//! - depthwise k x k: flex's accumulation (`acc = x * w + acc` over `kh`, then `kw`, padding
//!   positions skipped, as adding their zero products changes nothing), then bias + ReLU6 on
//!   the plane while it is in cache;
//! - 1x1 projection: the same `gemm`, then bias and the identity skip in one pass.
//!
//! The results are bit-identical to [`EfficientNet::forward_stages`](crate::efficientnet)
//! on flex (tested); the stem (3x3 stride 2 on 3 channels) still runs through Burn.

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
    blocks: Vec<Block>,
    head: Option<Pointwise>,
}

/// A tensor's values as `f32` on the host (`None` only if the conversion fails).
fn host<const D: usize>(t: Tensor<D>) -> Option<Vec<f32>> {
    t.into_data().convert::<f32>().try_into_vec::<f32>().ok()
}

impl Pointwise {
    fn new(conv: &FoldedConv) -> Option<Self> {
        let [out, inp, _, _] = conv.weight.dims();
        Some(Self {
            weight: host(conv.weight.val())?,
            bias: host(conv.bias.val())?,
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

/// `v = clamp(v + b, 0, 6)` over one channel's plane.
#[inline]
fn bias_relu6(plane: &mut [f32], b: f32) {
    for v in plane {
        *v = (*v + b).clamp(0.0, 6.0);
    }
}

/// Range `[start, end)` of outputs `o` whose input `o * stride + k - pad` lies in
/// `[0, input)` (flex's `valid_out_range` without dilation).
fn valid_range(k: usize, pad: usize, stride: usize, input: usize, output: usize) -> (usize, usize) {
    let start = if k >= pad {
        0
    } else {
        (pad - k).div_ceil(stride)
    };
    let limit = input + pad;
    let end = if k >= limit {
        0
    } else {
        (limit - k).div_ceil(stride)
    }
    .min(output);
    (start.min(end), end)
}

impl Depthwise {
    fn new(conv: &FoldedConv) -> Option<Self> {
        let [channels, _, kernel, _] = conv.weight.dims();
        Some(Self {
            weight: host(conv.weight.val())?,
            bias: host(conv.bias.val())?,
            channels,
            kernel,
            stride: conv.stride,
        })
    }

    fn out_size(&self, input: usize) -> usize {
        input.div_ceil(self.stride)
    }

    /// One channel: `out [oh, ow] = clamp(conv(x [h, w]) + b, 0, 6)`.
    fn plane(&self, c: usize, x: &[f32], (h, w): (usize, usize), out: &mut [f32]) {
        let (k, s) = (self.kernel, self.stride);
        let (oh, ow) = (self.out_size(h), self.out_size(w));
        let (pad_h, _) = tf_same_pad(h, k, s);
        let (pad_w, _) = tf_same_pad(w, k, s);
        let wt = &self.weight[c * k * k..(c + 1) * k * k];
        out.fill(0.0);
        for o_row in 0..oh {
            let out_row = &mut out[o_row * ow..(o_row + 1) * ow];
            for kh in 0..k {
                let (r0, r1) = valid_range(kh, pad_h, s, h, oh);
                if o_row < r0 || o_row >= r1 {
                    continue;
                }
                let in_row = &x[(o_row * s + kh - pad_h) * w..][..w];
                for kw in 0..k {
                    let (c0, c1) = valid_range(kw, pad_w, s, w, ow);
                    if c0 >= c1 {
                        continue;
                    }
                    let wv = wt[kh * k + kw];
                    let start = c0 * s + kw - pad_w;
                    if s == 1 {
                        let src = &in_row[start..start + (c1 - c0)];
                        for (o, &v) in out_row[c0..c1].iter_mut().zip(src) {
                            *o = v * wv + *o;
                        }
                    } else {
                        for (i, o) in out_row[c0..c1].iter_mut().enumerate() {
                            *o = *o + wv * in_row[start + i * s];
                        }
                    }
                }
            }
        }
        bias_relu6(out, self.bias[c]);
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
        Some(Self { blocks, head })
    }

    /// Run blocks `1..=last` (and the head when `last` is past the blocks) on one image's stem
    /// output `[C, h, w]`, appending the maps of `stages` to `taps[i]` (stage 0, the stem, is
    /// copied as it is).
    fn forward_image(
        &self,
        stem: &[f32],
        (mut h, mut w): (usize, usize),
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
        keep(0, stem, taps);
        ensure(&mut ws.a, stem.len());
        ws.a[..stem.len()].copy_from_slice(stem);
        let mut channels = stem.len() / (h * w).max(1);
        for (i, block) in self.blocks.iter().enumerate() {
            if i + 1 > last {
                break;
            }
            let n = h * w;
            let input = &ws.a[..channels * n];
            // Expansion: gemm, then bias + ReLU6.
            let expanded: &[f32] = match &block.expand {
                Some(e) => {
                    ensure(&mut ws.expanded, e.out * n);
                    let dst = &mut ws.expanded[..e.out * n];
                    e.product(input, n, dst, parallel);
                    for (c, plane) in dst.chunks_mut(n).enumerate() {
                        bias_relu6(plane, e.bias[c]);
                    }
                    dst
                }
                None => input,
            };
            // Depthwise, one fused plane per channel.
            let dw = &block.depthwise;
            let (oh, ow) = (dw.out_size(h), dw.out_size(w));
            let m = oh * ow;
            ensure(&mut ws.depthwise, dw.channels * m);
            let dst = &mut ws.depthwise[..dw.channels * m];
            if parallel {
                dst.par_chunks_mut(m)
                    .enumerate()
                    .for_each(|(c, out)| dw.plane(c, &expanded[c * n..(c + 1) * n], (h, w), out));
            } else {
                for (c, out) in dst.chunks_mut(m).enumerate() {
                    dw.plane(c, &expanded[c * n..(c + 1) * n], (h, w), out);
                }
            }
            // Projection: gemm, then bias (+ the identity skip).
            let p = &block.project;
            ensure(&mut ws.b, p.out * m);
            let out = &mut ws.b[..p.out * m];
            p.product(&ws.depthwise[..dw.channels * m], m, out, parallel);
            for (c, plane) in out.chunks_mut(m).enumerate() {
                let b = p.bias[c];
                if block.skip {
                    let skip = &ws.a[c * m..(c + 1) * m];
                    for (v, &x) in plane.iter_mut().zip(skip) {
                        *v = (*v + b) + x;
                    }
                } else {
                    for v in plane.iter_mut() {
                        *v += b;
                    }
                }
            }
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
            for (c, plane) in out.chunks_mut(n).enumerate() {
                bias_relu6(plane, head.bias[c]);
            }
            keep(head_stage, out, taps);
        }
    }

    /// Output `(channels, h, w)` of every stage for an input of `h x w` pixels.
    fn stage_shapes(&self, stem_channels: usize, (h, w): (usize, usize)) -> Vec<[usize; 3]> {
        let (mut h, mut w) = (h.div_ceil(2), w.div_ceil(2));
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
    pub(crate) fn forward_stages(
        &self,
        net: &EfficientNet,
        x: Tensor<4>,
        stages: &[usize],
    ) -> Option<Vec<Tensor<4>>> {
        let device = x.device();
        let [batch, _, height, width] = x.dims();
        let shapes = self.stage_shapes(net.stem.out_channels(), (height, width));
        let threads = rayon::current_num_threads().max(1);
        let workers = threads.min(batch).max(1);
        let run_chunk = |part: Tensor<4>, parallel: bool| -> Option<Vec<Vec<f32>>> {
            let images = part.dims()[0];
            let stem = host(burn::tensor::activation::relu6(net.stem.forward(part)))?;
            let [c0, h0, w0] = shapes[0];
            let per_image = c0 * h0 * w0;
            let mut taps: Vec<Vec<f32>> = stages
                .iter()
                .map(|&s| Vec::with_capacity(images * shapes[s].iter().product::<usize>()))
                .collect();
            let mut ws = Workspace::default();
            for img in stem.chunks(per_image) {
                self.forward_image(img, (h0, w0), stages, &mut taps, &mut ws, parallel);
            }
            Some(taps)
        };
        let parts: Vec<Vec<Vec<f32>>> = if workers < 2 {
            vec![run_chunk(x, true)?]
        } else {
            x.chunk(workers, 0)
                .into_par_iter()
                .map(|part| run_chunk(part, false))
                .collect::<Option<_>>()?
        };
        let maps = stages
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let [c, h, w] = shapes[s];
                let mut data = Vec::with_capacity(batch * c * h * w);
                for p in &parts {
                    data.extend_from_slice(&p[i]);
                }
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

    #[test]
    fn valid_range_matches_the_padded_positions() {
        // in 5, k 3, stride 2, pad (0, 1): outputs 0..3 read rows 2o + k.
        for k in 0..3 {
            let (s, e) = valid_range(k, 0, 2, 5, 3);
            for o in 0..3 {
                let inside = o * 2 + k < 5;
                assert_eq!((s..e).contains(&o), inside, "k {k} o {o}");
            }
        }
        // pad 2 on the left, stride 1: output 0 reads input k - 2.
        assert_eq!(valid_range(0, 2, 1, 8, 8), (2, 8));
        assert_eq!(valid_range(4, 2, 1, 8, 8), (0, 6));
    }
}
