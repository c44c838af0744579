import torch

from snap_bench.regularizers import sliced_wasserstein
from snap_bench.regularizers.base import build_regularizer
from snap_bench.config import MethodConfig


def gen(seed=0):
    return torch.Generator().manual_seed(seed)


def test_swd_of_tensor_with_itself_is_zero():
    x = torch.randn(50, 16, generator=gen(1))
    assert sliced_wasserstein(x, x, generator=gen()).item() == 0.0
    v = torch.randn(16, generator=gen(2))
    assert sliced_wasserstein(v, v, generator=gen()).item() == 0.0


def test_swd_is_symmetric_and_positive():
    x = torch.randn(40, 8, generator=gen(1))
    y = torch.randn(40, 8, generator=gen(2)) + 0.5
    a = sliced_wasserstein(x, y, generator=gen(3))
    b = sliced_wasserstein(y, x, generator=gen(3))
    assert a.item() > 0
    assert torch.allclose(a, b)


def test_swd_invariant_to_row_permutation_where_l2_is_not():
    x = torch.randn(64, 12, generator=gen(1))
    y = torch.randn(64, 12, generator=gen(2))
    perm = torch.randperm(64, generator=gen(5))
    assert torch.allclose(sliced_wasserstein(x, y, generator=gen(7)), sliced_wasserstein(x[perm], y, generator=gen(7)), atol=1e-6)
    assert sliced_wasserstein(x[perm], x, generator=gen(7)).item() < 1e-6
    assert torch.linalg.norm(x[perm] - x).item() > 1.0


def test_swd_detects_a_shift_of_the_distribution():
    x = torch.randn(128, 4, generator=gen(1))
    near = sliced_wasserstein(x, x + 0.01, n_projections=200, generator=gen(2)).item()
    far = sliced_wasserstein(x, x + 1.0, n_projections=200, generator=gen(2)).item()
    assert 0 < near < far
    # Shifting every point by c moves each 1-D projection by c·θ, so SW_2 = |c|·sqrt(E[(θ·1)^2]) = |c|·sqrt(d/d)=|c|.
    assert abs(far - 1.0) < 0.2


class Tiny(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.a = torch.nn.Linear(6, 5)
        self.frozen = torch.nn.Linear(6, 5)
        self.frozen.requires_grad_(False)


def _init_state(m):
    return {n: p.detach().clone() for n, p in m.named_parameters() if p.requires_grad}


def test_regularizers_zero_at_init_with_finite_zero_gradients():
    cfg = MethodConfig()
    for name in ("swd", "l2"):
        m = Tiny()
        init = _init_state(m)
        reg = build_regularizer(name, cfg, seed=0)
        pen = reg.penalty(m, init)
        assert pen.item() == 0.0
        pen.backward()
        for p in m.a.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all() and p.grad.abs().sum() == 0


def test_gradients_flow_to_trained_parameters_only():
    cfg = MethodConfig()
    for name in ("swd", "l2"):
        m = Tiny()
        init = _init_state(m)
        with torch.no_grad():
            m.a.weight.add_(torch.randn(5, 6, generator=gen(3)))
            m.a.bias.add_(1.0)
        pen = build_regularizer(name, cfg, seed=0).penalty(m, init)
        assert pen.item() > 0
        pen.backward()
        assert m.a.weight.grad is not None and m.a.weight.grad.abs().sum() > 0
        assert m.frozen.weight.grad is None
        assert not any(t.requires_grad for t in init.values())


def test_swd_regularizer_row_permutation_free_but_l2_is_not():
    cfg = MethodConfig()
    m = Tiny()
    init = _init_state(m)
    with torch.no_grad():
        m.a.weight.copy_(m.a.weight[torch.tensor([4, 3, 2, 1, 0])])
    assert build_regularizer("swd", cfg, 0).penalty(m, init).item() < 1e-6
    assert build_regularizer("l2", cfg, 0).penalty(m, init).item() > 0.01


def test_none_regularizer_is_inactive():
    reg = build_regularizer("none", MethodConfig(), 0)
    assert reg.active is False
    assert reg.penalty(Tiny(), {}).item() == 0.0


def _old_swd_penalty(model, init, n_projections=100, p=2.0, seed=0):
    """The penalty as first written: one tensor at a time, θ_init sorted inside each call."""
    from snap_bench.regularizers.base import safe_root
    from snap_bench.regularizers.swd import _as_rows, random_directions

    gen, dirs, total = torch.Generator().manual_seed(seed), {}, None
    for name, param in model.named_parameters():
        if not param.requires_grad or name not in init:
            continue
        rows = _as_rows(param)
        d = rows.shape[1]
        if d not in dirs:
            dirs[d] = random_directions(d, n_projections, gen, param.dtype)
        px = (rows @ dirs[d]).sort(dim=0).values
        py = (_as_rows(init[name]) @ dirs[d]).sort(dim=0).values
        sw = safe_root((px - py).abs().pow(p).mean(), p)
        total = sw if total is None else total + sw
    return total


class Shapes(torch.nn.Module):
    """Same-shape tensors (grouped by the vectorised penalty), other widths, a 1-D tensor and a frozen one."""

    def __init__(self, dtype):
        super().__init__()
        g = gen(11)
        mk = lambda *s: torch.nn.Parameter(torch.randn(*s, generator=g, dtype=dtype))  # noqa: E731
        self.a, self.b, self.c = mk(40, 12), mk(40, 12), mk(7, 12)
        self.d, self.norm = mk(30, 5), mk(12)
        self.frozen = torch.nn.Parameter(torch.randn(40, 12, generator=g, dtype=dtype), requires_grad=False)


def _moved(model):
    init = _init_state(model)
    with torch.no_grad():
        for i, q in enumerate(model.parameters()):
            q.add_(0.05 * torch.randn(q.shape, generator=gen(20 + i), dtype=q.dtype))
    return init


def test_vectorised_swd_equals_the_per_tensor_formula():
    from snap_bench.regularizers.swd import SlicedWassersteinRegularizer

    for dtype, tol in ((torch.float32, 1e-6), (torch.float64, 1e-12)):
        for p in (2.0, 1.0, 3.0):
            m = Shapes(dtype)
            init = _moved(m)
            old = _old_swd_penalty(m, init, 50, p, seed=3)
            old.backward()
            old_grads = {n: q.grad.clone() for n, q in m.named_parameters() if q.requires_grad}
            m.zero_grad()
            new = SlicedWassersteinRegularizer(n_projections=50, p=p, seed=3).penalty(m, init)
            new.backward()
            assert abs(new.item() - old.item()) <= tol * abs(old.item()), (dtype, p)
            for n, q in m.named_parameters():
                if q.requires_grad:
                    assert torch.allclose(q.grad, old_grads[n], rtol=tol * 10, atol=tol * 1e-2), (dtype, p, n)


def test_vectorised_swd_equals_the_per_tensor_formula_on_a_transformer(tiny):
    import copy

    from snap_bench.regularizers.swd import SlicedWassersteinRegularizer

    m = copy.deepcopy(tiny.model)
    init = _moved(m)
    reg = SlicedWassersteinRegularizer(n_projections=100, p=2.0, seed=0)
    reg.prepare(m, init)
    new = reg.penalty(m, init).item()
    old = _old_swd_penalty(m, init, 100, 2.0, seed=0).item()
    assert abs(new - old) <= 1e-6 * old
    assert reg.penalty(m, init).item() == new  # the cached θ_init projections are reused, unchanged
