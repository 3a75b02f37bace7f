"""TRANSCRIPTIONS of the official implementations' algorithms, written afresh for the speed benchmark.

Nothing here is medtut, and nothing here is imported by medtut: these functions exist only so that
``benchmarks/speed.py`` can time medtut's kernels against *the algorithm the official code runs*, in the
same process, on the same inputs. Each one follows the official code's control flow (its Python loops,
its per-element tensor ops, its order of operations); the code itself was written from a reading of the
official repository, not copied. Framework-specific parts are replaced by their PyTorch/NumPy
equivalents (TensorFlow 1 graph ops become eager PyTorch ops; ``.cuda()`` becomes the inputs' device),
and every other deviation is listed in the function's docstring.

Sources (latest stored snapshot of each repository; file and function named in each docstring):

1. local contrastive loss: github.com/krishnabits001/pseudo_label_contrastive_training (commit 2561c06),
   ``models.py::joint_tr_unet_seg_loss_and_local_cont_loss`` and ``utils.py::calc_pos_neg_index``;
2. pixel contrast loss and sampler: github.com/tfzhou/ContrastiveSeg (commit 287e5d3),
   ``lib/loss/loss_contrast.py::PixelContrastLoss``;
3. PSD scoring: github.com/ozgurkara99/ISNAS-DIP (commit 8f52924), ``utils/funcs.py`` (``psd``, ``db``,
   ``mse``, ``per_bw``, ``UsefullMaps``, ``Transformation``, ``Metric``, ``Cache``), ``utils/masks.py`` and
   the metric loop of ``random_search.py``;
4. AUC constraint terms: github.com/salusanga/alm-dnn, ``utils/custom_losses.py::ALM_terms`` at commit
   5a3bfca (2022; the 2026 "cleanup" commit ab3da74 overwrites the loss inside the loop over positives, so
   only the last positive reaches the gradient: we transcribe the 2022 version, which back-propagates every
   positive's term);
5. one MALA step on the MR posterior: github.com/kctezcan/sampling (commit cc96e15),
   ``Code/vaesampling.py::vaesampling`` (the sampling loop) and
   ``Code/definevae_2d_v1_mri_nocov_fullim_conz_homodyn_varsize_f2.py`` (``FT_tf``, ``tFT_tf``,
   ``UFT_tf``, ``tUFT_tf``, ``EHE_tf``, ``A_tf``, ``findgamma_cg2``, ``mupSmup``, ``optimalscale``,
   ``mupost_zy``).
"""
from __future__ import annotations

import math
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F

# =====================================================================================================
# 1. Local contrastive loss (Chaitanya et al. 2023), TensorFlow 1 graph in the official code
# =====================================================================================================


def lc_sample_anchors(masks_onehot: np.ndarray, batch_size_ft: int, num_classes: int, no_of_pos_eles: int = 3,
                      no_of_neg_eles: int = 3, rng: np.random.RandomState | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
    """TRANSCRIPTION of ``utils.py::calc_pos_neg_index`` (pseudo_label_contrastive_training).

    masks_onehot: (2·batch_size_ft, H, W, num_classes) one-hot (pseudo-)labels, images 0..B-1 paired with
    B..2B-1. For every pair and every foreground class present in both images: ``no_of_pos_eles`` anchor
    pixels per image drawn uniformly *with replacement* (``randint``) from the class, and
    ``no_of_neg_eles`` pixels from each other foreground class (the loss never reads these, but the
    official pipeline draws them every step, so they are timed). Returns (pos (2B, K-1, P, 2),
    neg (2B, K-1, n_neg·(K-2), 2)) of (row, col), 1000 where nothing was drawn, as the official arrays.

    Deviation: draws come from ``rng`` (a ``np.random.RandomState``) rather than NumPy's global state.
    """
    rng = np.random.RandomState(0) if rng is None else rng
    b, k = batch_size_ft, num_classes
    pos1 = np.full((b, k - 1, no_of_pos_eles, 2), 1000)
    pos2 = np.full((b, k - 1, no_of_pos_eles, 2), 1000)
    neg1 = np.full((b, k - 1, no_of_neg_eles * (k - 2), 2), 1000)
    neg2 = np.full((b, k - 1, no_of_neg_eles * (k - 2), 2), 1000)
    for pos_index in range(b):
        i1_list, i2_list = [], []
        for cls_index in range(k):
            i1_list.append(np.where(masks_onehot[pos_index, :, :, cls_index] > 0))
            i2_list.append(np.where(masks_onehot[b + pos_index, :, :, cls_index] > 0))
        for cls_pos in range(1, k):
            p1_list, p2_list = i1_list[cls_pos], i2_list[cls_pos]
            if np.shape(p1_list)[1] == 0 or np.shape(p2_list)[1] == 0:
                continue
            all_neg1 = [i1_list[c] for c in range(1, k) if c != cls_pos]
            all_neg2 = [i2_list[c] for c in range(1, k) if c != cls_pos]
            e1 = rng.randint(0, high=np.shape(p1_list)[1], size=no_of_pos_eles)
            e2 = rng.randint(0, high=np.shape(p2_list)[1], size=no_of_pos_eles)
            for p in range(no_of_pos_eles):
                pos1[pos_index][cls_pos - 1][p][0] = p1_list[0][e1[p]]
                pos1[pos_index][cls_pos - 1][p][1] = p1_list[1][e1[p]]
                pos2[pos_index][cls_pos - 1][p][0] = p2_list[0][e2[p]]
                pos2[pos_index][cls_pos - 1][p][1] = p2_list[1][e2[p]]
            for all_neg, out in ((all_neg1, neg1), (all_neg2, neg2)):
                n_c = 0
                for neg_list in all_neg:
                    if np.shape(neg_list)[1] == 0:
                        n_c += no_of_neg_eles
                        continue
                    e = rng.randint(0, high=np.shape(neg_list)[1], size=no_of_neg_eles)
                    for n in range(no_of_neg_eles):
                        out[pos_index][cls_pos - 1][n_c][0] = neg_list[0][e[n]]
                        out[pos_index][cls_pos - 1][n_c][1] = neg_list[1][e[n]]
                        n_c += 1
    return np.concatenate([pos1, pos2]), np.concatenate([neg1, neg2])


def _tf_l2_normalize(x: torch.Tensor) -> torch.Tensor:
    # tf.nn.l2_normalize(x, axis=-1): x / sqrt(max(sum(x²), 1e-12))
    return x * torch.rsqrt(torch.clamp((x * x).sum(-1, keepdim=True), min=1e-12))


def _lc_cos_sim(a: torch.Tensor, b: torch.Tensor, temp_fac: float) -> torch.Tensor:
    # modelObj.cos_sim: (1, D) x (1, D) -> (1, 1) cosine / temperature
    return _tf_l2_normalize(a) @ _tf_l2_normalize(b).T / temp_fac


def lc_loss(y_fin: torch.Tensor, y_l_reg: torch.Tensor, pos_indx: np.ndarray, batch_size_ft: int,
            temp_fac: float = 0.1, local_loss_exp_no: int = 1, normalisation: str = "intended") -> torch.Tensor:
    """TRANSCRIPTION of the local contrastive loss of
    ``models.py::joint_tr_unet_seg_loss_and_local_cont_loss`` (the ``inf == 0`` branch).

    y_fin: (2B, H, W, D) embeddings h_φ(F) (NHWC, not normalised: the official code averages the raw
    embeddings into class means and normalises inside ``cos_sim``); y_l_reg: (2B, H, W, K) one-hot labels;
    pos_indx: (2B, K-1, P, 2) anchor (row, col) from :func:`lc_sample_anchors`. Loops over pairs ×
    foreground classes × anchors exactly like the unrolled graph: per anchor, the class means of both
    images are formed with boolean masks, the cosine similarities with every foreground mean are computed
    one by one, and each term is guarded by the official zero/NaN conditions (``tf.cond`` →
    ``torch.where``). ``local_loss_exp_no=1``: "inter" (the default of the paper's script),
    0: "intra".

    normalisation: ``"official"`` divides the *running* sum by 2·P·(K-1) inside the pair loop, as the
    code does (pair k ends up weighted (2·P·(K-1))^-(B-k)); ``"intended"`` divides each pair's sum once
    (the mean the paper describes). Both then divide by ``batch_size_ft``.

    Deviations: eager PyTorch instead of a TF1 graph (graph construction, minutes for the unrolled loops,
    is not timed); the class lists (``pos_cls_ref``/``neg_cls_ref``, hard-coded per data set) are
    ``range(K-1)``/``range(1, K)``, i.e. all foreground classes, as for ACDC.
    """
    if normalisation not in ("official", "intended"):
        raise ValueError(f"normalisation must be 'official' or 'intended'; got {normalisation!r}")
    d = y_fin.shape[-1]
    k = y_l_reg.shape[-1]
    zero = y_fin.new_zeros(())
    zero_vec = y_fin.new_zeros((1, d))
    pos_cls_ref = list(range(k - 1))
    neg_cls_ref = list(range(1, k))
    inter = local_loss_exp_no == 1
    norm = (2 if inter else 1) * pos_indx.shape[2] * (k - 1)
    local_loss = zero
    total = zero
    for pos_index in range(batch_size_ft):
        x1, x2 = y_fin[pos_index], y_fin[batch_size_ft + pos_index]          # (H, W, D)
        m1, m2 = y_l_reg[pos_index], y_l_reg[batch_size_ft + pos_index]      # (H, W, K)
        if normalisation == "intended":
            local_loss = zero
        for pos_cls in pos_cls_ref:
            ele1 = pos_indx[pos_index][pos_cls]
            ele2 = pos_indx[batch_size_ft + pos_index][pos_cls]
            pos_avg1 = x1[m1[..., pos_cls + 1] > 0].mean(0).reshape(1, d)
            neg_list1 = [x1[m1[..., c] > 0].mean(0).reshape(1, d) for c in neg_cls_ref]
            pos_avg2 = x2[m2[..., pos_cls + 1] > 0].mean(0).reshape(1, d)
            neg_list2 = [x2[m2[..., c] > 0].mean(0).reshape(1, d) for c in neg_cls_ref]
            for n in range(len(ele1)):
                a1 = x1[int(ele1[n][0]), int(ele1[n][1])].reshape(1, d)
                a2 = x2[int(ele2[n][0]), int(ele2[n][1])].reshape(1, d)
                a1_zero = torch.count_nonzero(a1) == 0
                a2_zero = torch.count_nonzero(a2) == 0
                a1 = torch.where(a1_zero, zero_vec, a1)
                a2 = torch.where(a2_zero, zero_vec, a2)

                def guarded_cos(a, a_zero, mu):
                    bad = a_zero | (torch.count_nonzero(mu) == 0) | torch.isnan(a.sum()) | torch.isnan(mu.sum())
                    return torch.where(bad, zero, _lc_cos_sim(a, mu, temp_fac)[0, 0])

                num_i1 = guarded_cos(a1, a1_zero, pos_avg1)
                num_i2 = guarded_cos(a2, a2_zero, pos_avg2)
                if inter:
                    num_i1_i2 = guarded_cos(a1, a1_zero, pos_avg2)
                    num_i2_i1 = guarded_cos(a2, a2_zero, pos_avg1)

                def guarded_exp(a, a_zero, mu):
                    bad = a_zero | (torch.count_nonzero(mu) == 0) | torch.isnan(a.sum()) | torch.isnan(mu.sum())
                    return torch.where(bad, zero, torch.exp(_lc_cos_sim(a, mu, temp_fac)[0, 0]))

                den1 = zero
                den2 = zero
                for mu in neg_list1:
                    den1 = den1 + guarded_exp(a1, a1_zero, mu)
                if inter:
                    for mu in neg_list2:
                        den1 = den1 + guarded_exp(a1, a1_zero, mu)
                for mu in neg_list2:
                    den2 = den2 + guarded_exp(a2, a2_zero, mu)
                if inter:
                    for mu in neg_list1:
                        den2 = den2 + guarded_exp(a2, a2_zero, mu)

                def term(num, den):
                    bad = torch.isnan(torch.exp(num)) | torch.isnan(torch.exp(den)) | (num == 0) | (den == 0)
                    return torch.where(bad, zero, -torch.log(torch.exp(num) / torch.where(bad, 1.0 + zero, den)))

                local_loss = local_loss + term(num_i1, den1)
                local_loss = local_loss + term(num_i2, den2)
                if inter:
                    local_loss = local_loss + term(num_i1_i2, den1)
                    local_loss = local_loss + term(num_i2_i1, den2)
        if normalisation == "official":
            local_loss = local_loss / norm
        else:
            total = total + local_loss / norm
    return (local_loss if normalisation == "official" else total) / batch_size_ft


# =====================================================================================================
# 2. Pixel contrast loss and its hard/easy anchor sampler (Wang et al. 2021), PyTorch in the official code
# =====================================================================================================


def pc_hard_anchor_sampling(X: torch.Tensor, y_hat: torch.Tensor, y: torch.Tensor, max_samples: int = 1024,
                            max_views: int = 100, ignore_label: int = -1,
                            generator: torch.Generator | None = None
                            ) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """TRANSCRIPTION of ``PixelContrastLoss._hard_anchor_sampling`` (ContrastiveSeg).

    X: (B, h·w, D) embeddings; y_hat: (B, h·w) ground-truth labels (the official argument names are
    swapped: ``y_hat`` is the label, ``y`` the prediction). Per image, the classes with more than
    ``max_views`` pixels; n_view = min(max_samples // #(image, class), max_views); per (image, class)
    n_view//2 hard (label c, predicted ≠ c) and the rest easy anchors, topped up from the other set.
    Returns (X_ (#pairs, n_view, D), y_ (#pairs,) float).

    Deviations: ``torch.randperm`` draws from ``generator`` (the official code uses the global RNG);
    tensors are created on X's device instead of ``.cuda()``; the "should be never touched" branch raises
    ``RuntimeError`` (the official code logs and raises a bare ``Exception``).
    """
    batch_size, feat_dim = X.shape[0], X.shape[-1]
    classes = []
    total_classes = 0
    for ii in range(batch_size):
        this_y = y_hat[ii]
        this_classes = torch.unique(this_y)
        this_classes = [x for x in this_classes if x != ignore_label]
        this_classes = [x for x in this_classes if (this_y == x).nonzero().shape[0] > max_views]
        classes.append(this_classes)
        total_classes += len(this_classes)
    if total_classes == 0:
        return None, None
    n_view = max_samples // total_classes
    n_view = min(n_view, max_views)
    X_ = torch.zeros((total_classes, n_view, feat_dim), dtype=torch.float, device=X.device)
    y_ = torch.zeros(total_classes, dtype=torch.float, device=X.device)
    X_ptr = 0
    for ii in range(batch_size):
        this_y_hat = y_hat[ii]
        this_y = y[ii]
        for cls_id in classes[ii]:
            hard_indices = ((this_y_hat == cls_id) & (this_y != cls_id)).nonzero()
            easy_indices = ((this_y_hat == cls_id) & (this_y == cls_id)).nonzero()
            num_hard = hard_indices.shape[0]
            num_easy = easy_indices.shape[0]
            if num_hard >= n_view / 2 and num_easy >= n_view / 2:
                num_hard_keep = n_view // 2
                num_easy_keep = n_view - num_hard_keep
            elif num_hard >= n_view / 2:
                num_easy_keep = num_easy
                num_hard_keep = n_view - num_easy_keep
            elif num_easy >= n_view / 2:
                num_hard_keep = num_hard
                num_easy_keep = n_view - num_hard_keep
            else:
                raise RuntimeError(f"this should be never touched! {num_hard} {num_easy} {n_view}")
            perm = torch.randperm(num_hard, generator=generator)
            hard_indices = hard_indices[perm[:num_hard_keep]]
            perm = torch.randperm(num_easy, generator=generator)
            easy_indices = easy_indices[perm[:num_easy_keep]]
            indices = torch.cat((hard_indices, easy_indices), dim=0)
            X_[X_ptr, :, :] = X[ii, indices, :].squeeze(1)
            y_[X_ptr] = cls_id
            X_ptr += 1
    return X_, y_


def pc_contrastive(feats_: torch.Tensor, labels_: torch.Tensor, temperature: float = 0.1,
                   base_temperature: float = 0.07) -> torch.Tensor:
    """TRANSCRIPTION of ``PixelContrastLoss._contrastive`` (ContrastiveSeg): the anchor set is every
    sampled view; logits shifted by their row max; ``log_prob = logits − log(exp(logits) + Σ_neg exp)``;
    mean over positives (self excluded); loss = −(τ/τ_b)·mean over anchors. Deviation: masks are built
    on the inputs' device instead of ``.cuda()``. (The official division by ``mask.sum(1)`` gives NaN for
    an anchor without a positive, i.e. n_view = 1; the benchmark's inputs always have n_view ≥ 2.)"""
    anchor_num, n_view = feats_.shape[0], feats_.shape[1]
    labels_ = labels_.contiguous().view(-1, 1)
    mask = torch.eq(labels_, torch.transpose(labels_, 0, 1)).float()
    contrast_count = n_view
    contrast_feature = torch.cat(torch.unbind(feats_, dim=1), dim=0)
    anchor_feature = contrast_feature
    anchor_count = contrast_count
    anchor_dot_contrast = torch.div(torch.matmul(anchor_feature, torch.transpose(contrast_feature, 0, 1)),
                                    temperature)
    logits_max, _ = torch.max(anchor_dot_contrast, dim=1, keepdim=True)
    logits = anchor_dot_contrast - logits_max.detach()
    mask = mask.repeat(anchor_count, contrast_count)
    neg_mask = 1 - mask
    logits_mask = torch.ones_like(mask).scatter_(
        1, torch.arange(anchor_num * anchor_count, device=mask.device).view(-1, 1), 0)
    mask = mask * logits_mask
    neg_logits = torch.exp(logits) * neg_mask
    neg_logits = neg_logits.sum(1, keepdim=True)
    exp_logits = torch.exp(logits)
    log_prob = logits - torch.log(exp_logits + neg_logits)
    mean_log_prob_pos = (mask * log_prob).sum(1) / mask.sum(1)
    loss = -(temperature / base_temperature) * mean_log_prob_pos
    return loss.mean()


def pc_loss(feats: torch.Tensor, labels: torch.Tensor, predict: torch.Tensor, temperature: float = 0.1,
            base_temperature: float = 0.07, max_samples: int = 1024, max_views: int = 100,
            ignore_label: int = -1, generator: torch.Generator | None = None) -> torch.Tensor:
    """TRANSCRIPTION of ``PixelContrastLoss.forward`` (ContrastiveSeg).

    feats: (B, D, h, w), already ℓ2-normalised by the official ``ProjectionHead``; labels: (B, H, W)
    ground truth, resized to (h, w) by nearest neighbour; predict: (B, h, w) argmax of the segmentation
    logits (the official ``ContrastCELoss`` takes it at the logits' resolution, which is the embeddings').
    """
    labels = labels.unsqueeze(1).float().clone()
    labels = F.interpolate(labels, (feats.shape[2], feats.shape[3]), mode="nearest")
    labels = labels.squeeze(1).long()
    batch_size = feats.shape[0]
    labels = labels.contiguous().view(batch_size, -1)
    predict = predict.contiguous().view(batch_size, -1)
    feats = feats.permute(0, 2, 3, 1)
    feats = feats.contiguous().view(feats.shape[0], -1, feats.shape[-1])
    feats_, labels_ = pc_hard_anchor_sampling(feats, labels, predict, max_samples, max_views, ignore_label,
                                              generator)
    return pc_contrastive(feats_, labels_, temperature, base_temperature)


# =====================================================================================================
# 3. PSD scoring of an untrained network's output (ISNAS-DIP), NumPy in the official code
# =====================================================================================================


def isnas_circle_mask(img_dim: tuple[int, int], diameter_ratio: float = 0.5) -> np.ndarray:
    """TRANSCRIPTION of ``utils/masks.py::circle_mask``: (1, H, W) bool, xx² + yy² < (d/2)² with
    xx = j/W − 1/2, yy = i/H − 1/2."""
    h, w = img_dim
    xx, yy = np.meshgrid(range(w), range(h))
    xx = xx / w - 1 / 2
    yy = yy / h - 1 / 2
    return (xx ** 2 + yy ** 2 < (diameter_ratio / 2) ** 2)[None, :, :]


def isnas_circular_strip_mask(img_dim, outer_diameter_ratio: float = 0.2, inner_diameter_ratio: float = 0.1):
    """TRANSCRIPTION of ``utils/masks.py::circular_strip_mask`` (xor of two circles)."""
    return np.logical_xor(isnas_circle_mask(img_dim, outer_diameter_ratio),
                          isnas_circle_mask(img_dim, inner_diameter_ratio))


def _isnas_apply_mask(arr: np.ndarray, mask: np.ndarray) -> np.ndarray:
    channels = arr.shape[-3]
    if channels != 1:
        mask = np.concatenate([mask] * channels, axis=0)
    if arr.ndim == 3:
        return arr[mask]
    if arr.ndim == 4:
        return arr[:, mask]
    raise ValueError(arr.shape)


def _isnas_psd(image: np.ndarray) -> np.ndarray:
    # funcs.psd: fftshift(|fft2(image, norm='forward')|²); fftshift over *all* axes, as the official code
    return np.fft.fftshift(np.abs(np.fft.fft2(image, norm="forward")) ** 2)


def _isnas_db(arr: np.ndarray) -> np.ndarray:
    return 10 * np.log(arr)        # funcs.db: natural log (not log10)


def _isnas_to_gray_avg(image: np.ndarray) -> np.ndarray:
    if image.shape[-3] == 1:
        return image
    if image.ndim == 3:
        return image.mean(-3, keepdims=True)
    return np.stack([_isnas_to_gray_avg(im) for im in image])


def _isnas_per_bw(psd: np.ndarray, masks: np.ndarray, p: float):
    """funcs.per_bw: loop over growing discs until p of the energy is inside, then interpolate."""
    psd = _isnas_to_gray_avg(psd)
    if psd.ndim == 3:
        total_energy = psd.sum()
        prev_energy = 0
        for i, mask in enumerate(masks):
            energy = psd[mask].sum()
            if energy >= p * total_energy:
                break
            prev_energy = energy
        slope = (energy - prev_energy) / 1
        i = (p * total_energy - prev_energy) / slope + i
        return np.float64(i / masks.shape[0])
    return np.array([_isnas_per_bw(ps, masks, p) for ps in psd])


def _isnas_mse(a: np.ndarray, b: np.ndarray):
    if a.ndim in (1, 2) and b.ndim in (1, 2):
        return ((a - b) ** 2).mean(-1)
    return ((a - b) ** 2).mean((-1, -2, -3))


class IsnasMaps:
    """TRANSCRIPTION of ``utils/funcs.py::UsefullMaps`` (the parts the three scores use): the frequency
    strip (diameters 0.2/0.1 of the image size, i.e. radii 0.05-0.10 cycles/pixel) and 99 discs of
    diameter ``linspace(0, √2, 100)[1:]`` for ``per_bw``. Built once per image size (the official
    ``random_search.py`` builds it once, before its loop over models).

    db_floor: 0 (the official ``db``: 10·ln(p)) for timing; the value check also runs with medtut's floor
    (10·ln(p + 1e-12)) to show that this floor is the whole difference (not an official option)."""

    def __init__(self, img_size: tuple[int, int], db_floor: float = 0.0):
        self.strip = isnas_circular_strip_mask(img_size, 0.2, 0.1)
        diameters = np.linspace(0, math.sqrt(2), 100, endpoint=True)
        self.bw_masks = np.stack([isnas_circle_mask(img_size, diameters[i]) for i in range(1, 100)], axis=0)
        self.transformations: dict[str, Callable[[np.ndarray], np.ndarray]] = {
            "psd": _isnas_psd, "db": (lambda arr: _isnas_db(arr + db_floor)) if db_floor else _isnas_db,
            "strip": lambda arr: _isnas_apply_mask(arr, self.strip),
            "99_per_bw": lambda arr: _isnas_per_bw(arr, self.bw_masks, p=0.99).mean(),
        }


class IsnasCache:
    """TRANSCRIPTION of ``utils/funcs.py::Cache`` + ``Transformation.__call__``: a tree of intermediate
    results per registered array, so ``psd`` and ``psd db`` of an array are computed once and reused by
    every metric that starts with them."""

    def __init__(self):
        self._cache: dict[int, dict] = {}

    def register(self, arr: np.ndarray) -> None:
        self._cache[id(arr)] = {"data": arr, "children": {}}

    def unregister(self, arr: np.ndarray) -> None:
        del self._cache[id(arr)]

    def transform(self, arr: np.ndarray, transformation: str, maps: IsnasMaps) -> np.ndarray:
        node = self._cache[id(arr)]
        for t in transformation.split():
            if t not in node["children"]:
                node["children"][t] = {"data": maps.transformations[t](node["data"]), "children": {}}
            node = node["children"][t]
        return node["data"]


def isnas_scores(img_noisy: np.ndarray, out: np.ndarray, maps: IsnasMaps, cache: IsnasCache) -> dict[str, float]:
    """TRANSCRIPTION of one iteration of ``random_search.py``'s metric loop for one model's random output.

    img_noisy: (C, H, W) the corrupted image, registered in ``cache`` once before the loop over models
    (as the official script does); out: (1, C, H, W) the untrained network's output. Computes the
    official metrics ``"psd db mse"``, ``"psd db strip mse"`` (the paper's strip-MSE) and the low-pass
    metric ``"psd 99_per_bw"``, through the cache. Values are in the official units: dB with the
    *natural* log, so the two MSEs are (ln 10)² times medtut's log10 dB MSEs.

    Deviations: the metric "mini-language" (``Metric``/``Transformation`` objects parsing strings) is
    reduced to the cache walk it performs; the EMD metric ``"psd strip hist emd"`` is left out because
    medtut computes a different quantity on purpose (a Wasserstein distance between the strip values,
    not between two histograms' bin heights).
    """
    cache.register(out)
    try:
        result = {}
        for metric, transformation in (("psd db mse", "psd db"), ("psd db strip mse", "psd db strip")):
            a = cache.transform(img_noisy, transformation, maps)
            b = cache.transform(out, transformation, maps)
            result[metric] = float(np.mean(_isnas_mse(a, b)))
        result["psd 99_per_bw"] = float(cache.transform(out, "psd 99_per_bw", maps))
        return result
    finally:
        cache.unregister(out)


# =====================================================================================================
# 4. AUC constraint terms with an Augmented Lagrangian (Sangalli et al. 2021), PyTorch in the official code
# =====================================================================================================


def alm_terms_backward(buffer_batch_pos: torch.Tensor, buffer_batch_neg: torch.Tensor,
                       lambdas_index_buffer: torch.Tensor, delta: float, mu: float, lambdas: np.ndarray,
                       p2_norm: int = 1) -> tuple[np.ndarray, float]:
    """TRANSCRIPTION of ``utils/custom_losses.py::ALM_terms`` (alm-dnn, commit 5a3bfca, 2022), ALM branch.

    buffer_batch_pos: (|P_b|, 1) logits of the batch's positives, buffer_batch_neg: (|N_b|, 1) of its
    negatives (both attached to the graph); lambdas_index_buffer: (|P_b|,) training-set positions;
    lambdas: (N_train,) float64 NumPy array of multipliers, updated in place. For each positive, q is
    accumulated over the negatives one at a time, the term (μ/2 q^{2p} + λ_i q)/(|P_b||N_b|) is formed
    and **back-propagated on its own** (``backward(retain_graph=True)``), then λ_i ← λ_i + μ q.
    Returns (lambdas, the sum of the terms as a float), the gradients being left in ``.grad``.

    Deviations: the sum of the terms is returned for checking (the official function returns the last
    term, which it does not use); ``lambdas[i] += mu * q`` is written with ``float(q)`` (the official code
    adds a (1, 1) tensor to a NumPy scalar, which only works on the CPU); the training-penalty bookkeeping
    ``train_penalty`` (a detached copy of q^{2p}, logged only) is kept, as it is computed every batch.
    """
    total = 0.0
    train_penalty = 0.0
    for pos_sample, single_lambda_index in zip(buffer_batch_pos, lambdas_index_buffer):
        q_pos = torch.zeros([1, 1], device=buffer_batch_pos.device)
        for neg_sample in buffer_batch_neg:
            q_pos = q_pos + torch.relu(-(pos_sample - neg_sample) + delta)
        loss = (mu / 2 * torch.pow(q_pos, 2 * p2_norm) + lambdas[int(single_lambda_index)] * q_pos) \
            / (len(buffer_batch_pos) * len(buffer_batch_neg))
        loss.backward(retain_graph=True)
        total += float(loss.detach())
        lambdas[int(single_lambda_index)] += mu * float(q_pos.detach())
        train_penalty += torch.pow(q_pos, 2 * p2_norm).detach().cpu().numpy() / (
            len(buffer_batch_pos) * len(buffer_batch_neg))
    return lambdas, total


def alm_epoch(logits: torch.Tensor, targets: torch.Tensor, order: np.ndarray, batch_size: int, delta: float,
              mu: float, lambdas: np.ndarray) -> tuple[np.ndarray, float, torch.Tensor]:
    """The per-batch part of the official training loop (``utils/train_test_CIFAR.py``, commit 5a3bfca)
    over one epoch, network excluded: for each mini-batch (``order`` gives the shuffled training-set
    positions) split the logits into positives and negatives (``train_out[tuple_positive_index]``), look
    up the positives' multiplier indices, and call :func:`alm_terms_backward` when the batch has both.

    logits: (N_train, 1) leaf tensor standing in for the network outputs. Returns (lambdas, the sum of the
    terms over the epoch, logits.grad). Deviation: logits are not recomputed by a network per batch.
    """
    total = 0.0
    for start in range(0, len(order), batch_size):
        idx = order[start:start + batch_size]
        train_out = logits[idx]
        target = targets[idx]
        tuple_positive_index = torch.nonzero(target == 1, as_tuple=True)
        tuple_negative_index = torch.nonzero(target == 0, as_tuple=True)
        buffer_batch_pos = train_out[tuple_positive_index]
        buffer_batch_neg = train_out[tuple_negative_index]
        lambdas_index_buffer = torch.from_numpy(idx[tuple_positive_index[0].numpy()]).float()
        if len(buffer_batch_pos) != 0 and len(buffer_batch_neg) != 0:
            lambdas, t = alm_terms_backward(buffer_batch_pos, buffer_batch_neg, lambdas_index_buffer, delta,
                                            mu, lambdas)
            total += t
    return lambdas, total, logits.grad


# =====================================================================================================
# 5. One MALA step on the MR latent posterior (Tezcan et al. 2022), TensorFlow 1 + NumPy in the official code
# =====================================================================================================


class TezcanPosterior:
    """TRANSCRIPTION of the single-coil operators and the latent log-likelihood ``mupSmup`` of
    ``definevae_2d_v1_mri_nocov_fullim_conz_homodyn_varsize_f2.py``, with sx = 1 (all precisions divided
    by the decoder precision, as ``vaesampling.py`` sets them up).

    decode: z (1, *latent) → μ_θ(z) (1, 1, H, W) real; y: (H, W) complex k-space in the official
    convention (``FT_tf``: fft2 / √(HW), then a roll by (H//2, W//2), no shift in image space); mask:
    (H, W) bool; noise_precision: 1/σ_n² (passed directly, the official ``nsksp_manual`` route; its
    automatic estimate from a k-space corner would use the variance of the complex samples, 2σ_n²).
    numinversioniters: CG iterations of ``findgamma_cg2`` (20 in ``run_reconsamp_hcp.py``).

    Deviations: phase image, bias field and coil maps are all ones (magnitude image, ``BFcorr`` off, one
    coil) and the image is not padded into a larger k-space; complex128/float64 or complex64/float32
    follows the decoder's dtype.
    """

    def __init__(self, decode: Callable[[torch.Tensor], torch.Tensor], y: torch.Tensor, mask: torch.Tensor,
                 noise_precision: float, model_precision: float = 50.0, numinversioniters: int = 20):
        self.decode = decode
        self.yy = y
        self.uspat = mask.to(y.dtype)
        self.nsksp = noise_precision / model_precision
        self.scl = model_precision
        self.sx = 1.0
        self.numinversioniters = numinversioniters
        self.sclfactor = 1.0
        h, w = y.shape[-2:]
        self.kshval = (h // 2, w // 2)
        self.n = h * w

    # -- operators (FT_tf, tFT_tf, UFT_tf, tUFT_tf, EHE_tf, A_tf) ---------------------------------------
    def FT(self, x):
        x2 = x * self.sclfactor
        return torch.roll(torch.fft.fft2(x2), self.kshval, dims=(-2, -1)) / math.sqrt(self.n)

    def tFT(self, k):
        temp = math.sqrt(self.n) * torch.fft.ifft2(torch.roll(k, (-self.kshval[0], -self.kshval[1]), dims=(-2, -1)))
        return temp * self.sclfactor

    def UFT(self, x):
        return self.uspat * self.FT(x)

    def tUFT(self, k):
        return self.tFT(self.uspat * k)

    def EHE(self, im):
        return self.tUFT(self.nsksp * self.UFT(im))

    def A(self, im):
        return im * self.sx + self.EHE(im)

    @staticmethod
    def cdp(a, b):
        return torch.sum(a * torch.conj(b))

    def findgamma_cg2(self, mm):
        """CG on A γ = |mm| from γ = 0, a fixed number of iterations (A applied twice per iteration, as
        the graph does), plus the relative errors the graph also evaluates.

        Deviation (a guard): once ‖r‖² falls to float round-off (≤ 1e-12·‖b‖²) the iterate is frozen
        (α = β = 0) while the loop still runs its fixed number of iterations at the same cost. The
        official loop has no test; with the bias field and phase of its HCP run the residual stays well
        above round-off, but on our inputs (no bias field, one coil: A has two eigenvalues) CG converges
        in a few iterations and the residual then underflows, giving 0/0 = NaN.
        """
        b = torch.abs(mm).to(mm.dtype)
        its = torch.zeros_like(b)
        errtmp0 = torch.linalg.norm(self.A(its) - b) / torch.linalg.norm(b) * 100
        r = b - self.A(its)
        p = r
        floor = 1e-12 * float(self.cdp(b, b).real.detach())
        for _ in range(self.numinversioniters):
            rTr_curr = self.cdp(r, r)
            done = bool(rTr_curr.real <= floor)
            pAp = self.cdp(p, self.A(p))
            alpha = torch.zeros_like(rTr_curr) if done else rTr_curr / pAp
            its = its + alpha * p
            r = r - alpha * self.A(p)
            rTr_new = self.cdp(r, r)
            beta = torch.zeros_like(rTr_curr) if done else rTr_new / rTr_curr
            p = r + beta * p
        errtmp = torch.linalg.norm(self.A(its) - b) / torch.linalg.norm(b) * 100
        return its, errtmp, errtmp0

    def _complex(self, mu):
        return mu.to(self.yy.dtype)

    # -- the session runs of one step --------------------------------------------------------------------
    def optimal_scale(self, z):
        """``optimalscale`` = Σ conj(μ)·tUFT(y) / Σ conj(μ)·tUFT(UFT(μ)) (one decoder pass, no gradient)."""
        with torch.no_grad():
            mu = self._complex(self.decode(z)[0, 0])
            t1 = torch.sum(torch.conj(mu) * self.tUFT(self.yy))
            t2 = torch.sum(torch.conj(mu) * self.tUFT(self.UFT(mu)))
        return t1 / t2

    def evaluate(self, z):
        """One ``sess.run`` of the sampling loop: ``mupSmup`` (= log p(y|z)/scl + const) and its gradient
        in z (autograd through the unrolled CG, as ``tf.gradients``), plus the other fetched tensors:
        the CG errors, ``p_y_x`` and the data-consistent image ``mupost_zy`` (a second CG)."""
        z = z.detach().requires_grad_(True)
        with torch.enable_grad():
            mu = self._complex(self.decode(z)[0, 0])
            gamma, errtmp, errtmp0 = self.findgamma_cg2(self.sx * mu)
            full1 = torch.sum(self.sx * mu * gamma)
            full2_1 = torch.sum(torch.conj(self.yy) * self.nsksp * self.UFT(gamma))
            full2 = full2_1 + torch.conj(full2_1)
            full3 = self.sx * torch.sum(torch.conj(mu) * mu)
            mupSmup = 0.5 * (full1 + full2 - full3)
            (grd,) = torch.autograd.grad(mupSmup.real, z)
        with torch.no_grad():
            p_y_x = -torch.linalg.norm(self.UFT(mu.detach()) - self.yy) ** 2
            mupost_zy = self.findgamma_cg2(self.tUFT(self.nsksp * self.yy) + self.sx * mu.detach())
        return float(mupSmup.real.detach()), grd.detach(), (errtmp, errtmp0, p_y_x, mupost_zy)


def tezcan_mala_steps(post: TezcanPosterior, z0: torch.Tensor, num_steps: int, step: float,
                      generator: torch.Generator | None = None, estimate_scale: bool = True,
                      mh: str = "official", draw_dtype: torch.dtype | None = None) -> tuple[torch.Tensor, int]:
    """TRANSCRIPTION of the sampling loop of ``vaesampling.py`` with ``empiricalPrior=False`` (p(z) = N(0, I)),
    for one chain per row of ``z0`` (the official code runs one chain; several chains are looped).

    Per step and chain: (i) the scale factor re-estimated from the current z (``estimate_scale``);
    (ii) value and gradient at the *current* z recomputed (not kept from the previous step); (iii) the
    proposal z' = z + step·(∇mupSmup + ∇log p(z)/scl) + √(2·step/scl)·ξ; (iv) value and gradient at z';
    (v) p1 = U(z') − U(z), q1 = log q(z|z') − log q(z'|z) with
    log q(a|b) = −‖a − b − step·∇U(b)‖²/(4·step),
    α = min(p1 + q1, 0), accept if log(u)/scl < α.

    mh: ``"official"`` multiplies q1 by 1/scl as the code does (the proposal-ratio term is then 50× too
    small against the target term); ``"textbook"`` leaves it out, which is exact MALA on
    π(z) ∝ p(y|z) p(z) with step size ε = step/scl. Returns (z after ``num_steps``, accepted count).

    Deviations: ξ (one (num_chains, *latent) draw) and u (one (num_chains,) draw) come from ``generator``
    in this order each step, like :func:`medtut.mr_sampling.mala`, instead of ``np.random`` (drawn in
    ``draw_dtype``, default z0's, then cast: a float64 run can share a float32 run's draws); none of the
    per-step logging lists (``p1s``, ``ims``, ...) is kept; the prior is the code's ``empiricalPrior=False``
    branch, N(0, I) as medtut's, while ``run_reconsamp_hcp.py`` uses the empirical prior (a Gaussian
    fitted to training-set encoder means, whose NumPy mat-vecs would add to the official time per step).
    """
    if mh not in ("official", "textbook"):
        raise ValueError(f"mh must be 'official' or 'textbook'; got {mh!r}")
    scl = post.scl
    z = z0.detach().clone()
    accepted = 0

    def log_q_xp_x(xp, x, p_x):
        return -1 / (4 * step) * float(torch.linalg.norm(xp - x - step * p_x)) ** 2

    for _ in range(num_steps):
        noise = torch.randn(z.shape, generator=generator, dtype=draw_dtype or z.dtype).to(z.dtype)
        u_all = torch.rand(z.shape[0], generator=generator, dtype=draw_dtype or z.dtype).to(z.dtype)
        rows = []
        for c in range(z.shape[0]):
            zsc = z[c:c + 1]
            post.sclfactor = 1.0
            if estimate_scale:
                post.sclfactor = float(post.optimal_scale(zsc).real)
            mup_curr, grd_curr, _ = post.evaluate(zsc)
            grd_pz_curr = -(1 / scl) * zsc
            pz_curr = -(1 / scl) * 0.5 * float(torch.linalg.norm(zsc)) ** 2
            zs_prop = zsc + step * (grd_curr + grd_pz_curr) + math.sqrt(2 * step / scl) * noise[c:c + 1]
            mup_prop, grd_prop, _ = post.evaluate(zs_prop)
            grd_pz_prop = -(1 / scl) * zs_prop
            pz_prop = -(1 / scl) * 0.5 * float(torch.linalg.norm(zs_prop)) ** 2
            p1 = (mup_prop + pz_prop) - (mup_curr + pz_curr)
            q1 = log_q_xp_x(zsc, zs_prop, grd_prop + grd_pz_prop) - log_q_xp_x(zs_prop, zsc, grd_curr + grd_pz_curr)
            if mh == "official":
                q1 = (1 / scl) * q1
            alpha = min(p1 + q1, 0.0)
            u = (1 / scl) * math.log(float(u_all[c]))
            if u < alpha:
                rows.append(zs_prop)
                accepted += 1
            else:
                rows.append(zsc.clone())
        z = torch.cat(rows)
    return z, accepted
