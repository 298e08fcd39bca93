;; The per-pixel loops of an overlay, as WebAssembly (src/render/kernels.ts
;; loads this module and moves the data in and out of its memory).
;;
;; Why: a one-image run draws one overlay, and JavaScript loops over a
;; photo's pixels run in V8's interpreter until the optimising compiler has
;; compiled them, about 10 ms each in a fresh process (resampling 6-16 ms,
;; normalising 6-8, blending 6-10 for a 224x224 map): WebAssembly runs at
;; machine speed from its first call. Each function computes exactly what
;; the JavaScript it replaced computed: float32 values are widened to
;; float64, the arithmetic is float64 in JavaScript's order, and results
;; are rounded to float32 when stored, so every output is bit for bit the
;; same. Pointers are byte offsets into the memory; kernels.ts lays out
;; every call's buffers, aligned to 16 bytes.
(module
  (memory (export "memory") 1)

  ;; The extremes of the values `resample` wrote (NaN never counts), and
  ;; the value at the peak `normalizeWithPeak` found.
  (global $min (export "min") (mut f64) (f64.const inf))
  (global $max (export "max") (mut f64) (f64.const -inf))
  (global $peakValue (export "peakValue") (mut f64) (f64.const -inf))

  ;; One output of a linear interpolation: a * (1 - w) + b * w.
  (func $lerp (param $a f64) (param $b f64) (param $w f64) (result f64)
    (f64.add
      (f64.mul (local.get $a) (f64.sub (f64.const 1) (local.get $w)))
      (f64.mul (local.get $b) (local.get $w))))

  ;; Bilinear resampling (resize.ts resampleInto, OpenCV's two passes).
  ;; src: the map, srcWidth values a row. xLo, xHi (i32) and xW (f32): per
  ;; output column, the two source columns and the second's weight; yLo,
  ;; yHi, yW the same per output row. rows: room for the source rows
  ;; firstRow..lastRow resampled horizontally. dst: width x height values.
  (func (export "resample")
    (param $src i32) (param $srcWidth i32)
    (param $xLo i32) (param $xHi i32) (param $xW i32) (param $width i32)
    (param $yLo i32) (param $yHi i32) (param $yW i32) (param $height i32)
    (param $firstRow i32) (param $lastRow i32) (param $rows i32) (param $dst i32)
    (local $r i32) (local $i i32) (local $j i32) (local $s i32) (local $o i32)
    (local $a i32) (local $b i32) (local $w f64) (local $value f64)
    (local $min f64) (local $max f64)
    (local.set $min (f64.const inf))
    (local.set $max (f64.const -inf))
    ;; Pass 1: each needed source row, horizontally.
    (local.set $r (local.get $firstRow))
    (local.set $o (local.get $rows))
    (block $rowsDone
      (loop $row
        (br_if $rowsDone (i32.gt_s (local.get $r) (local.get $lastRow)))
        (local.set $s (i32.add (local.get $src) (i32.shl (i32.mul (local.get $r) (local.get $srcWidth)) (i32.const 2))))
        (local.set $i (i32.const 0))
        (block $columnsDone
          (loop $column
            (br_if $columnsDone (i32.ge_u (local.get $i) (local.get $width)))
            (f32.store
              (i32.add (local.get $o) (i32.shl (local.get $i) (i32.const 2)))
              (f32.demote_f64
                (call $lerp
                  (f64.promote_f32 (f32.load (i32.add (local.get $s) (i32.shl (i32.load (i32.add (local.get $xLo) (i32.shl (local.get $i) (i32.const 2)))) (i32.const 2)))))
                  (f64.promote_f32 (f32.load (i32.add (local.get $s) (i32.shl (i32.load (i32.add (local.get $xHi) (i32.shl (local.get $i) (i32.const 2)))) (i32.const 2)))))
                  (f64.promote_f32 (f32.load (i32.add (local.get $xW) (i32.shl (local.get $i) (i32.const 2))))))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $column)))
        (local.set $o (i32.add (local.get $o) (i32.shl (local.get $width) (i32.const 2))))
        (local.set $r (i32.add (local.get $r) (i32.const 1)))
        (br $row)))
    ;; Pass 2: each output row blends two of those rows.
    (local.set $o (local.get $dst))
    (block $outputDone
      (loop $outputRow
        (br_if $outputDone (i32.ge_u (local.get $j) (local.get $height)))
        (local.set $a (i32.add (local.get $rows) (i32.shl (i32.mul (i32.sub (i32.load (i32.add (local.get $yLo) (i32.shl (local.get $j) (i32.const 2)))) (local.get $firstRow)) (local.get $width)) (i32.const 2))))
        (local.set $b (i32.add (local.get $rows) (i32.shl (i32.mul (i32.sub (i32.load (i32.add (local.get $yHi) (i32.shl (local.get $j) (i32.const 2)))) (local.get $firstRow)) (local.get $width)) (i32.const 2))))
        (local.set $w (f64.promote_f32 (f32.load (i32.add (local.get $yW) (i32.shl (local.get $j) (i32.const 2))))))
        (local.set $i (i32.const 0))
        (block $pixelsDone
          (loop $pixel
            (br_if $pixelsDone (i32.ge_u (local.get $i) (local.get $width)))
            (local.set $value
              (call $lerp
                (f64.promote_f32 (f32.load (i32.add (local.get $a) (i32.shl (local.get $i) (i32.const 2)))))
                (f64.promote_f32 (f32.load (i32.add (local.get $b) (i32.shl (local.get $i) (i32.const 2)))))
                (local.get $w)))
            (f32.store (local.get $o) (f32.demote_f64 (local.get $value)))
            ;; The unrounded value, as the JavaScript compared it.
            (if (f64.lt (local.get $value) (local.get $min)) (then (local.set $min (local.get $value))))
            (if (f64.gt (local.get $value) (local.get $max)) (then (local.set $max (local.get $value))))
            (local.set $o (i32.add (local.get $o) (i32.const 4)))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $pixel)))
        (local.set $j (i32.add (local.get $j) (i32.const 1)))
        (br $outputRow)))
    (global.set $min (local.get $min))
    (global.set $max (local.get $max)))

  ;; Min-max normalisation with the argmax of the result (normalize.ts
  ;; minMaxNormalizeWithPeak), `n` values from `values` to `out` (which may
  ;; be the same). Returns the first index of the largest normalised value;
  ;; that value is left in $peakValue.
  (func (export "normalizeWithPeak") (param $values i32) (param $out i32) (param $n i32) (param $min f64) (param $span f64) (result i32)
    (local $i i32) (local $v f64) (local $normalized f32) (local $best i32) (local $bestValue f32)
    (local.set $bestValue (f32.const -inf))
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (local.set $v (f64.promote_f32 (f32.load (i32.add (local.get $values) (i32.shl (local.get $i) (i32.const 2))))))
        ;; NaN and -Infinity give 0, +Infinity 1.
        (local.set $normalized
          (if (result f32) (f64.ge (local.get $v) (local.get $min))
            (then
              (if (result f32) (f64.eq (local.get $v) (f64.const inf))
                (then (f32.const 1))
                (else (f32.demote_f64 (f64.div (f64.sub (local.get $v) (local.get $min)) (local.get $span))))))
            (else (f32.const 0))))
        (f32.store (i32.add (local.get $out) (i32.shl (local.get $i) (i32.const 2))) (local.get $normalized))
        (if (f32.gt (local.get $normalized) (local.get $bestValue))
          (then
            (local.set $bestValue (local.get $normalized))
            (local.set $best (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next)))
    (global.set $peakValue (f64.promote_f32 (local.get $bestValue)))
    (local.get $best))

  ;; All 256 x 256 blends of an image byte (the index's high byte) with a
  ;; heat byte (its low byte) for one alpha (overlay.ts): the JavaScript's
  ;; Math.floor(keep * image + alpha * heat + 0.5 + 1e-9).
  (func (export "blendTable") (param $alpha f64) (param $table i32)
    (local $keep f64) (local $image i32) (local $heat i32)
    (local.set $keep (f64.sub (f64.const 1) (local.get $alpha)))
    (block $imagesDone
      (loop $image
        (br_if $imagesDone (i32.ge_u (local.get $image) (i32.const 256)))
        (local.set $heat (i32.const 0))
        (block $heatsDone
          (loop $heat
            (br_if $heatsDone (i32.ge_u (local.get $heat) (i32.const 256)))
            (i32.store8
              (i32.add (local.get $table) (i32.or (i32.shl (local.get $image) (i32.const 8)) (local.get $heat)))
              (i32.trunc_f64_s
                (f64.floor
                  (f64.add
                    (f64.add
                      (f64.add
                        (f64.mul (local.get $keep) (f64.convert_i32_u (local.get $image)))
                        (f64.mul (local.get $alpha) (f64.convert_i32_u (local.get $heat))))
                      (f64.const 0.5))
                    (f64.const 1e-9)))))
            (local.set $heat (i32.add (local.get $heat) (i32.const 1)))
            (br $heat)))
        (local.set $image (i32.add (local.get $image) (i32.const 1)))
        (br $image))))

  ;; colormap.ts colormapIndex: round(255 * v) for v in 0..1, clamped; NaN 0.
  (func $colormapIndex (param $v f64) (result i32)
    (if (result i32) (i32.eqz (f64.gt (local.get $v) (f64.const 0)))
      (then (i32.const 0))
      (else
        (if (result i32) (f64.ge (local.get $v) (f64.const 1))
          (then (i32.const 255))
          (else (i32.trunc_f64_s (f64.add (f64.mul (local.get $v) (f64.const 255)) (f64.const 0.5))))))))

  ;; The heatmap coloured by `lut` (768 bytes) and blended over the packed
  ;; RGB `image` through `blend` (blendTable's), `pixels` pixels, into `out`
  ;; (which may be `image`: each pixel is read before it is written).
  (func (export "overlay") (param $image i32) (param $heat i32) (param $pixels i32) (param $blend i32) (param $lut i32) (param $out i32)
    (local $i i32) (local $o i32) (local $k i32)
    (block $done
      (loop $next
        (br_if $done (i32.ge_u (local.get $i) (local.get $pixels)))
        (local.set $k (i32.add (local.get $lut)
          (i32.mul (call $colormapIndex (f64.promote_f32 (f32.load (i32.add (local.get $heat) (i32.shl (local.get $i) (i32.const 2)))))) (i32.const 3))))
        (i32.store8 (i32.add (local.get $out) (local.get $o))
          (i32.load8_u (i32.add (local.get $blend) (i32.or (i32.shl (i32.load8_u (i32.add (local.get $image) (local.get $o))) (i32.const 8)) (i32.load8_u (local.get $k))))))
        (i32.store8 (i32.add (local.get $out) (i32.add (local.get $o) (i32.const 1)))
          (i32.load8_u (i32.add (local.get $blend) (i32.or (i32.shl (i32.load8_u (i32.add (local.get $image) (i32.add (local.get $o) (i32.const 1)))) (i32.const 8)) (i32.load8_u offset=1 (local.get $k))))))
        (i32.store8 (i32.add (local.get $out) (i32.add (local.get $o) (i32.const 2)))
          (i32.load8_u (i32.add (local.get $blend) (i32.or (i32.shl (i32.load8_u (i32.add (local.get $image) (i32.add (local.get $o) (i32.const 2)))) (i32.const 8)) (i32.load8_u offset=2 (local.get $k))))))
        (local.set $o (i32.add (local.get $o) (i32.const 3)))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $next))))

  ;; PNG's Up filter (png.ts): each of `height` rows of `stride` bytes of
  ;; `rgb` as a filter byte (2) and its bytes minus those of the row above
  ;; (mod 256; the first row as it is), into `rows`. Sixteen bytes at a
  ;; time, then one by one.
  (func (export "upFilter") (param $rgb i32) (param $stride i32) (param $height i32) (param $rows i32)
    (local $y i32) (local $s i32) (local $o i32) (local $i i32) (local $vectorBytes i32)
    (local.set $vectorBytes (i32.sub (local.get $stride) (i32.rem_u (local.get $stride) (i32.const 16))))
    (i32.store8 (local.get $rows) (i32.const 2))
    (memory.copy (i32.add (local.get $rows) (i32.const 1)) (local.get $rgb) (local.get $stride))
    (local.set $y (i32.const 1))
    (block $rowsDone
      (loop $row
        (br_if $rowsDone (i32.ge_u (local.get $y) (local.get $height)))
        (local.set $s (i32.add (local.get $rgb) (i32.mul (local.get $y) (local.get $stride))))
        (local.set $o (i32.add (local.get $rows) (i32.add (i32.mul (local.get $y) (i32.add (local.get $stride) (i32.const 1))) (i32.const 1))))
        (i32.store8 (i32.sub (local.get $o) (i32.const 1)) (i32.const 2))
        (local.set $i (i32.const 0))
        (block $vectorsDone
          (loop $vector
            (br_if $vectorsDone (i32.ge_u (local.get $i) (local.get $vectorBytes)))
            (v128.store (i32.add (local.get $o) (local.get $i))
              (i8x16.sub
                (v128.load (i32.add (local.get $s) (local.get $i)))
                (v128.load (i32.sub (i32.add (local.get $s) (local.get $i)) (local.get $stride)))))
            (local.set $i (i32.add (local.get $i) (i32.const 16)))
            (br $vector)))
        (block $bytesDone
          (loop $byte
            (br_if $bytesDone (i32.ge_u (local.get $i) (local.get $stride)))
            (i32.store8 (i32.add (local.get $o) (local.get $i))
              (i32.sub
                (i32.load8_u (i32.add (local.get $s) (local.get $i)))
                (i32.load8_u (i32.sub (i32.add (local.get $s) (local.get $i)) (local.get $stride)))))
            (local.set $i (i32.add (local.get $i) (i32.const 1)))
            (br $byte)))
        (local.set $y (i32.add (local.get $y) (i32.const 1)))
        (br $row))))
)
