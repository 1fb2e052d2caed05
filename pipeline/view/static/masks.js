// Masks as COCO compressed RLE (the `mask_rle` column), decoded in the page for what is on
// screen only, painted straight at the size they are shown.
"use strict";

// The run lengths of a COCO compressed RLE string (pycocotools' rleFrString).
function rleCounts(text) {
  const counts = [];
  let p = 0;
  while (p < text.length) {
    let x = 0, k = 0, more = 1;
    while (more) {
      const c = text.charCodeAt(p) - 48;
      x |= (c & 0x1f) << (5 * k);
      more = c & 0x20;
      p++; k++;
      if (!more && (c & 0x10) && 5 * k < 32) x |= -1 << (5 * k);
    }
    if (counts.length > 2) x += counts[counts.length - 2];
    counts.push(x);
  }
  return counts;
}

// Calls visit(x, y) for every pixel of the mask (column-major runs, zeros first).
function eachMaskPixel(text, height, visit) {
  const counts = rleCounts(text);
  let at = 0;
  for (let r = 0; r < counts.length; r++) {
    const end = at + counts[r];
    if (r % 2 === 1) {
      for (let i = at; i < end; i++) {
        const x = (i / height) | 0;
        visit(x, i - x * height);
      }
    }
    at = end;
  }
}

// Paints `instances` onto ctx (whose canvas shows the frame at `scale`): masks blended at
// `alpha`, then boxes, labels and keypoints. Returns a label map (instance position + 1 per
// shown pixel) for finding the instance under the pointer.
function paintInstances(ctx, instances, frameHeight, scale, options) {
  const w = ctx.canvas.width, h = ctx.canvas.height;
  const layer = new ImageData(w, h);
  const labels = new Int32Array(w * h);
  instances.forEach((inst, position) => {
    if (!inst.mask_rle) return;
    const [r, g, b] = options.colourOf(inst);
    eachMaskPixel(inst.mask_rle, frameHeight, (x, y) => {
      const tx = (x * scale) | 0, ty = (y * scale) | 0;
      if (tx >= w || ty >= h) return;
      const o = ty * w + tx;
      labels[o] = position + 1;
      layer.data[4 * o] = r; layer.data[4 * o + 1] = g; layer.data[4 * o + 2] = b; layer.data[4 * o + 3] = 255;
    });
  });
  const off = document.createElement("canvas");
  off.width = w; off.height = h;
  off.getContext("2d").putImageData(layer, 0, 0);
  ctx.save();
  ctx.globalAlpha = options.alpha === undefined ? 0.5 : options.alpha;
  ctx.drawImage(off, 0, 0);
  ctx.restore();
  instances.forEach((inst) => {
    const colour = `rgb(${options.colourOf(inst).join(",")})`;
    const x1 = inst.x1 * scale, y1 = inst.y1 * scale;
    if (options.boxes !== false) {
      ctx.strokeStyle = colour; ctx.lineWidth = Math.max(1, 2 * Math.min(1, scale * 2));
      ctx.strokeRect(x1, y1, (inst.x2 - inst.x1) * scale, (inst.y2 - inst.y1) * scale);
    }
    if (options.labels) {
      const text = `${inst.category} ${inst.score.toFixed(2)}` + (inst.track_id != null ? ` #${inst.track_id}` : "");
      ctx.font = "12px sans-serif";
      const tw = ctx.measureText(text).width + 6;
      ctx.fillStyle = colour; ctx.fillRect(x1, Math.max(0, y1 - 15), tw, 15);
      ctx.fillStyle = "#000"; ctx.fillText(text, x1 + 3, Math.max(11, y1 - 4));
    }
    if (options.skeleton && inst.keypoints && inst.keypoints.length) {
      const k = inst.keypoints, seen = (i) => k[3 * i + 2] > 0;
      ctx.strokeStyle = colour; ctx.lineWidth = 2;
      // COCO's skeleton joins 17 person keypoints; other sets (the shapes' 4) get dots only.
      for (const [a, b] of (k.length === 51 ? options.skeleton : [])) {
        if (3 * Math.max(a, b) + 2 >= k.length || !seen(a) || !seen(b)) continue;
        ctx.beginPath(); ctx.moveTo(k[3 * a] * scale, k[3 * a + 1] * scale);
        ctx.lineTo(k[3 * b] * scale, k[3 * b + 1] * scale); ctx.stroke();
      }
      ctx.fillStyle = colour;
      for (let i = 0; 3 * i + 2 < k.length; i++) {
        if (seen(i)) { ctx.beginPath(); ctx.arc(k[3 * i] * scale, k[3 * i + 1] * scale, 3, 0, 2 * Math.PI); ctx.fill(); }
      }
    }
  });
  return labels;
}

// A grey canvas with a note, where the source is gone (the masks are drawn over it).
function blankFrame(ctx, note) {
  ctx.fillStyle = "#3a3a3a";
  ctx.fillRect(0, 0, ctx.canvas.width, ctx.canvas.height);
  ctx.fillStyle = "#ddd"; ctx.font = "12px sans-serif";
  ctx.fillText(note, 6, 16, ctx.canvas.width - 12);
}
