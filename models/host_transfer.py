"""Moving a batch between host and accelerator in one copy each way.

Every copy between the host and a GPU costs a synchronisation and a fixed latency, however
small the data. So frames go to the device as one pinned buffer (`frames_to_device`), and a
batch's results (boxes, scores, labels, keypoints, mask areas, RLE run lengths: tensors of
any dtypes and shapes) come back packed as one byte buffer (`fetch`). On the CPU both are
plain views: no copies beyond what torch needs anyway.
"""

from __future__ import annotations

import numpy as np
import torch


def frames_to_device(frames: list[np.ndarray], device: torch.device) -> list[torch.Tensor]:
    """(H, W, 3) uint8 frames as tensors on `device`, in one non-blocking copy on CUDA.

    On CUDA the frames are gathered into one pinned (page-locked) host buffer, so the copy
    runs asynchronously by DMA while the host goes on; torch's caching host allocator keeps
    the buffer from being reused before the copy is done.
    """
    if device.type != "cuda":
        return [torch.from_numpy(_contiguous(frame)) for frame in frames]
    sizes = [frame.size for frame in frames]
    staging = torch.empty(sum(sizes), dtype=torch.uint8, pin_memory=True)
    host = staging.numpy()
    offset = 0
    for frame, size in zip(frames, sizes):
        host[offset:offset + size] = frame.reshape(-1)
        offset += size
    on_device = staging.to(device, non_blocking=True)
    return [part.view(frame.shape) for part, frame in zip(on_device.split(sizes), frames)]


def fetch(tensors: dict[str, torch.Tensor]) -> dict[str, np.ndarray]:
    """Numpy copies of `tensors` (on one device), brought to the host in a single transfer."""
    if not tensors:
        return {}
    names = list(tensors)
    flat = [tensors[name].detach().contiguous().reshape(-1) for name in names]
    packed = torch.cat([t.view(torch.uint8) for t in flat])
    if packed.device.type == "cuda":
        host = torch.empty(packed.numel(), dtype=torch.uint8, pin_memory=True)
        host.copy_(packed, non_blocking=True)
        torch.cuda.current_stream(packed.device).synchronize()
    else:
        host = packed
    buffer = host.numpy()
    result, offset = {}, 0
    for name, tensor, values in zip(names, (tensors[n] for n in names), flat):
        nbytes = values.numel() * values.element_size()
        dtype = _NUMPY_DTYPES[tensor.dtype]
        chunk = buffer[offset:offset + nbytes].copy()  # a fresh, aligned array per field
        result[name] = chunk.view(dtype).reshape(tuple(tensor.shape))
        offset += nbytes
    return result


_NUMPY_DTYPES = {
    torch.bool: np.bool_,
    torch.uint8: np.uint8,
    torch.int32: np.int32,
    torch.int64: np.int64,
    torch.float16: np.float16,
    torch.float32: np.float32,
    torch.float64: np.float64,
}


def _contiguous(frame: np.ndarray) -> np.ndarray:
    """A contiguous, writable view or copy: torch refuses to wrap read-only arrays safely."""
    if frame.flags.writeable and frame.flags.c_contiguous:
        return frame
    return np.array(frame, order="C", copy=True)
