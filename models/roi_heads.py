"""maskray's RoI heads: torchvision's `RoIHeads` with a capped post-processing and a mask loss
chosen at construction.

Two differences to torchvision's class, both constructor arguments:
- `pre_nms_top`: at most this many box x class candidates per image go into the batched NMS
  of the box branch, the best by score (as Detectron2 caps them). torchvision sends every
  candidate above the score threshold: at threshold 0 that is proposals x classes (1,000 x 90)
  per image, and the NMS over them dominates a forward. While fewer candidates than the cap
  pass the threshold (any usual threshold), the detections are exactly torchvision's.
- `mask_loss`: "sigmoid" (torchvision's, per-class binary cross-entropy) or "softmax" (a
  softmax over classes at each pixel; Mask R-CNN paper, table 2b); inference reads the
  predicted class's probability either way.
The forward composes the box, mask and keypoint branches from torchvision's own functions,
except that keypoint heatmaps are decoded for all instances at once (models/keypoints.py).
At inference each detection also carries `embeddings`: the box head's feature of the proposal
it came from, L2-normalised, its appearance for tracking (pipeline/tracking/tracker.py).
"""

from __future__ import annotations

import torch
from torch import Tensor
from torchvision.models.detection import roi_heads as tv
from torchvision.ops import boxes as box_ops

from maskray.models.keypoints import keypoint_inference
from maskray.models.predictor_config import PRE_NMS_TOP
from maskray.models.variants import MASK_LOSSES, softmax_mask_loss


class DetectionRoIHeads(tv.RoIHeads):
    """torchvision's RoIHeads (box parts; optional mask and keypoint parts; its sampling and
    post-processing settings, same defaults) plus `pre_nms_top`, `candidate_filter` and
    `mask_loss`.

    pre_nms_top: None keeps every candidate above the score threshold (torchvision's way).
    candidate_filter: an object with `keep(labels, scores) -> bool mask` (e.g. the classes and
        per-class thresholds a user asked for), applied before the cap and the NMS, so other
        classes neither take candidate slots nor cost NMS work. None keeps every class.
    """

    def __init__(self, box_roi_pool, box_head, box_predictor, *, fg_iou_thresh: float = 0.5,
                 bg_iou_thresh: float = 0.5, batch_size_per_image: int = 512,
                 positive_fraction: float = 0.25, bbox_reg_weights=None, score_thresh: float = 0.05,
                 nms_thresh: float = 0.5, detections_per_img: int = 100,
                 pre_nms_top: int | None = PRE_NMS_TOP, candidate_filter=None,
                 mask_roi_pool=None, mask_head=None,
                 mask_predictor=None, mask_loss: str = "sigmoid", keypoint_roi_pool=None,
                 keypoint_head=None, keypoint_predictor=None):
        super().__init__(box_roi_pool, box_head, box_predictor, fg_iou_thresh, bg_iou_thresh,
                         batch_size_per_image, positive_fraction, bbox_reg_weights, score_thresh,
                         nms_thresh, detections_per_img, mask_roi_pool, mask_head, mask_predictor,
                         keypoint_roi_pool, keypoint_head, keypoint_predictor)
        if pre_nms_top is not None and pre_nms_top < 1:
            raise ValueError(f"pre_nms_top must be at least 1, got {pre_nms_top}")
        if mask_loss not in MASK_LOSSES:
            raise ValueError(f"mask_loss must be one of {', '.join(MASK_LOSSES)}, not {mask_loss!r}")
        self.pre_nms_top = pre_nms_top
        self.candidate_filter = candidate_filter
        self.mask_loss = mask_loss

    def forward(self, features: dict[str, Tensor], proposals: list[Tensor],
                image_shapes: list[tuple[int, int]], targets: list[dict[str, Tensor]] | None = None):
        """(detections per image, losses): torchvision's contract for `GeneralizedRCNN`."""
        if self.training:
            proposals, matched, labels, regression_targets = self.select_training_samples(
                proposals, targets)
        pooled = self.box_head(self.box_roi_pool(features, proposals, image_shapes))
        class_logits, box_regression = self.box_predictor(pooled)
        losses: dict[str, Tensor] = {}
        result: list[dict[str, Tensor]] = []
        if self.training:
            losses["loss_classifier"], losses["loss_box_reg"] = tv.fastrcnn_loss(
                class_logits, box_regression, labels, regression_targets)
            # The mask and keypoint branches learn from the foreground RoIs only.
            foreground = [torch.where(image_labels > 0)[0] for image_labels in labels]
            rois = [p[f] for p, f in zip(proposals, foreground)]
            matched = [m[f] for m, f in zip(matched, foreground)]
        else:
            boxes, scores, classes, sources = self._postprocess(
                class_logits, box_regression, proposals, image_shapes)
            # Each kept detection's box-head feature, the appearance a tracker compares.
            embeddings = torch.nn.functional.normalize(pooled.flatten(1).float(), dim=1)
            offsets = [0] + torch.tensor([len(p) for p in proposals]).cumsum(0).tolist()
            result = [{"boxes": b, "labels": c, "scores": s, "embeddings": embeddings[offset + i]}
                      for b, s, c, i, offset in zip(boxes, scores, classes, sources, offsets)]
            rois = boxes
        if self.has_mask():
            self._mask_branch(features, rois, image_shapes, targets, matched if self.training else None,
                              result, losses)
        if self.has_keypoint():
            self._keypoint_branch(features, rois, image_shapes, targets,
                                  matched if self.training else None, result, losses)
        return result, losses

    def _mask_branch(self, features, rois, image_shapes, targets, matched, result, losses) -> None:
        logits = self.mask_predictor(self.mask_head(self.mask_roi_pool(features, rois, image_shapes)))
        if self.training:
            masks = [t["masks"] for t in targets]
            labels = [t["labels"] for t in targets]
            loss = tv.maskrcnn_loss if self.mask_loss == "sigmoid" else softmax_mask_loss
            losses["loss_mask"] = loss(logits, rois, masks, labels, matched)
            return
        labels = [r["labels"] for r in result]
        if self.mask_loss == "sigmoid":
            probabilities = tv.maskrcnn_inference(logits, labels)
        else:
            chosen = torch.cat(labels) if labels else logits.new_zeros(0, dtype=torch.int64)
            picked = logits.softmax(dim=1)[torch.arange(len(chosen), device=logits.device), chosen]
            probabilities = picked[:, None].split([len(x) for x in labels])
        for detections, masks in zip(result, probabilities):
            detections["masks"] = masks

    def _keypoint_branch(self, features, rois, image_shapes, targets, matched, result, losses):
        pooled = self.keypoint_roi_pool(features, rois, image_shapes)
        logits = self.keypoint_predictor(self.keypoint_head(pooled))
        if self.training:
            keypoints = [t["keypoints"] for t in targets]
            losses["loss_keypoint"] = tv.keypointrcnn_loss(logits, rois, keypoints, matched)
            return
        points, scores = keypoint_inference(logits, rois)  # torchvision's, batched
        for detections, image_points, image_scores in zip(result, points, scores):
            detections["keypoints"] = image_points
            detections["keypoints_scores"] = image_scores

    def postprocess_detections(self, class_logits: Tensor, box_regression: Tensor,
                               proposals: list[Tensor], image_shapes: list[tuple[int, int]]):
        """Per image: boxes (D, 4), scores (D,), labels (D,), D <= detections_per_img.

        torchvision's steps (decode, clip, drop background, score threshold, drop empty boxes,
        NMS per class, keep the best) with at most `pre_nms_top` candidates entering the NMS.
        The host syncs per image are a fixed few (one selection, the NMS), whatever the
        threshold or the number of candidates.
        """
        return self._postprocess(class_logits, box_regression, proposals, image_shapes)[:3]

    def _postprocess(self, class_logits: Tensor, box_regression: Tensor,
                     proposals: list[Tensor], image_shapes: list[tuple[int, int]]):
        """`postprocess_detections`' boxes, scores and labels, and per image the index of each
        detection's proposal (which box-head feature it came from)."""
        num_classes = class_logits.shape[-1]
        counts = [len(p) for p in proposals]
        decoded = self.box_coder.decode(box_regression, proposals).split(counts)
        probabilities = torch.softmax(class_logits, -1).split(counts)
        all_boxes, all_scores, all_labels, all_sources = [], [], [], []
        for boxes, scores, shape in zip(decoded, probabilities, image_shapes):
            boxes = box_ops.clip_boxes_to_image(boxes, shape)[:, 1:].reshape(-1, 4)
            labels = torch.arange(1, num_classes, device=scores.device).repeat(len(scores))
            scores = scores[:, 1:].reshape(-1)
            chosen = self._candidates(boxes, scores, labels)
            boxes, scores, labels = boxes[chosen], scores[chosen], labels[chosen]
            keep = box_ops.batched_nms(boxes, scores, labels, self.nms_thresh)
            keep = keep[: self.detections_per_img]
            all_boxes.append(boxes[keep])
            all_scores.append(scores[keep])
            all_labels.append(labels[keep])
            all_sources.append(torch.div(chosen[keep], num_classes - 1, rounding_mode="floor"))
        return all_boxes, all_scores, all_labels, all_sources

    def _candidates(self, boxes: Tensor, scores: Tensor, labels: Tensor) -> Tensor:
        """Indices (ascending) of the candidates above the threshold with a non-empty box (and
        of a class the candidate filter keeps), the best `pre_nms_top` of them by score."""
        width, height = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
        valid = (scores > self.score_thresh) & (width >= 1e-2) & (height >= 1e-2)
        if self.candidate_filter is not None:
            valid &= self.candidate_filter.keep(labels, scores)
        if self.pre_nms_top is not None and self.pre_nms_top < len(scores):
            ranked = torch.where(valid, scores, torch.full_like(scores, -1.0))
            best = ranked.topk(self.pre_nms_top, sorted=False).indices.sort().values
            return best[valid[best]]
        return torch.where(valid)[0]
