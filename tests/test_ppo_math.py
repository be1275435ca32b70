"""GAE, PPO loss terms and LR schedules against hand-computed values."""

import math

import pytest
import torch

from memo_rl.ppo import clipped_policy_loss, compute_gae, learning_rate, normalize_advantages, value_loss
from memo_rl.ppo.losses import explained_variance, masked_mean


def reference_gae(rewards, values, dones, bootstrap, trunc_values, gamma, lam):
    """Straight scalar loop, one env, written from the definitions."""
    T = len(rewards)
    adv = [0.0] * T
    nxt = 0.0
    for t in reversed(range(T)):
        if dones[t]:
            next_value, carry = trunc_values[t], 0.0
        else:
            next_value = values[t + 1] if t + 1 < T else bootstrap
            carry = nxt
        delta = rewards[t] + gamma * next_value - values[t]
        adv[t] = delta + gamma * lam * carry
        nxt = adv[t]
    return adv


def test_gae_hand_computed_two_steps():
    # T=2, one env, no cut: A1 = r1 + g*B - V1; A0 = r0 + g*V1 - V0 + g*l*A1
    r, v, b, g, lam = [1.0, 2.0], [0.5, 0.25], 4.0, 0.9, 0.8
    adv, ret = compute_gae(
        torch.tensor([[r[0]], [r[1]]]), torch.tensor([[v[0]], [v[1]]]), torch.zeros(2, 1, dtype=torch.bool),
        torch.tensor([b]), gamma=g, gae_lambda=lam,
    )
    a1 = 2.0 + 0.9 * 4.0 - 0.25  # 5.35
    a0 = 1.0 + 0.9 * 0.25 - 0.5 + 0.9 * 0.8 * a1  # 0.725 + 3.852
    assert adv[:, 0].tolist() == pytest.approx([a0, a1])
    assert ret[:, 0].tolist() == pytest.approx([a0 + 0.5, a1 + 0.25])


def test_gae_termination_truncation_and_trial_boundary():
    # env 0: terminated at t=1 (no bootstrap); env 1: truncated at t=1 (bootstrap with V(final)=3);
    # env 2: a trial boundary at t=2 treated as truncation with value 1.5; env 3 no cut.
    T, gamma, lam = 4, 0.99, 0.95
    torch.manual_seed(0)
    rewards = torch.rand(T, 4)
    values = torch.rand(T, 4)
    dones = torch.zeros(T, 4, dtype=torch.bool)
    dones[1, 0] = dones[1, 1] = dones[2, 2] = True
    trunc = torch.zeros(T, 4)
    trunc[1, 1], trunc[2, 2] = 3.0, 1.5
    bootstrap = torch.tensor([0.7, -0.2, 0.1, 2.0])
    adv, ret = compute_gae(rewards, values, dones, bootstrap, trunc, gamma, lam)
    for n in range(4):
        expected = reference_gae(
            rewards[:, n].tolist(), values[:, n].tolist(), dones[:, n].tolist(), bootstrap[n].item(),
            trunc[:, n].tolist(), gamma, lam,
        )
        assert adv[:, n].tolist() == pytest.approx(expected, abs=1e-6)
    assert torch.allclose(ret, adv + values)
    # The cut at t=1 stops credit from t=2 onwards flowing back to t<=1 for env 0:
    rewards2 = rewards.clone()
    rewards2[2:, 0] += 100.0
    adv2, _ = compute_gae(rewards2, values, dones, bootstrap, trunc, gamma, lam)
    assert torch.allclose(adv2[:2, 0], adv[:2, 0])


def test_gae_lambda_one_equals_discounted_return_minus_value():
    rewards = torch.tensor([[1.0], [0.0], [2.0]])
    values = torch.tensor([[0.3], [0.1], [0.2]])
    adv, ret = compute_gae(rewards, values, torch.zeros(3, 1, dtype=torch.bool), torch.tensor([5.0]), gamma=0.5, gae_lambda=1.0)
    assert ret[:, 0].tolist() == pytest.approx([1 + 0.5 * 0 + 0.25 * 2 + 0.125 * 5, 0 + 0.5 * 2 + 0.25 * 5, 2 + 0.5 * 5])


def test_clipped_policy_loss_fixed_batch():
    old = torch.log(torch.tensor([0.5, 0.5, 0.5, 0.5]))
    new = torch.log(torch.tensor([0.75, 0.25, 0.55, 0.45]))  # ratios 1.5, 0.5, 1.1, 0.9
    adv = torch.tensor([1.0, 1.0, -2.0, -2.0])
    out = clipped_policy_loss(new, old, adv, clip_coef=0.2)
    # per-sample max(-A r, -A clip(r)): [-1.2, -0.5, 2.2, 1.8] -> mean 0.575
    assert out.loss.item() == pytest.approx(0.575, abs=1e-6)
    assert out.clip_fraction.item() == pytest.approx(0.5)
    ratios = torch.tensor([1.5, 0.5, 1.1, 0.9])
    assert out.approx_kl.item() == pytest.approx(((ratios - 1) - ratios.log()).mean().item(), abs=1e-6)
    masked = clipped_policy_loss(new, old, adv, 0.2, mask=torch.tensor([1.0, 1.0, 0.0, 0.0]))
    assert masked.loss.item() == pytest.approx((-1.2 - 0.5) / 2, abs=1e-6)


def test_policy_loss_gradient_zero_when_clipped():
    old = torch.zeros(1)
    new = torch.tensor([math.log(1.5)], requires_grad=True)
    clipped_policy_loss(new, old, torch.tensor([1.0]), 0.2).loss.backward()
    assert new.grad.item() == 0.0


def test_value_loss_with_and_without_clip():
    values, old, returns = torch.tensor([2.0, 0.0]), torch.tensor([1.0, 0.0]), torch.tensor([3.0, 1.0])
    assert value_loss(values, old, returns).item() == pytest.approx(0.5 * (1.0 + 1.0) / 2)
    # clipped value for the first entry: 1 + clamp(1, -0.5, 0.5) = 1.5 -> error 2.25 > 1
    assert value_loss(values, old, returns, value_clip=0.5).item() == pytest.approx(0.5 * (2.25 + 1.0) / 2)


def test_normalize_and_helpers():
    x = torch.tensor([1.0, 2.0, 3.0, 4.0])
    z = normalize_advantages(x)
    assert z.mean().item() == pytest.approx(0.0, abs=1e-6)
    assert z.pow(2).mean().item() == pytest.approx(1.0, abs=1e-5)
    assert masked_mean(x, torch.tensor([1, 0, 0, 1])).item() == 2.5
    assert explained_variance(x, x) == 1.0
    assert math.isnan(explained_variance(x, torch.ones(4)))


@pytest.mark.parametrize(
    "schedule,step,expected",
    [("constant", 50, 1.0), ("linear", 55, 0.55), ("linear", 100, 0.1), ("cosine", 55, 0.55), ("cosine", 100, 0.1)],
)
def test_learning_rate_schedules(schedule, step, expected):
    # warm-up over the first 10 steps, then 90 steps to min_lr 0.1
    assert learning_rate(step, 100, 1.0, schedule, warmup_steps=10, min_lr=0.1) == pytest.approx(expected)
    assert learning_rate(5, 100, 1.0, schedule, warmup_steps=10) == pytest.approx(0.5)


def test_categorical_helpers_match_torch_distributions():
    from memo_rl.ppo import categorical

    torch.manual_seed(0)
    logits = torch.randn(6, 5, 4)
    actions = torch.randint(0, 4, (6, 5))
    reference = torch.distributions.Categorical(logits=logits)
    log_p, entropy = categorical.log_prob_and_entropy(logits, actions)
    torch.testing.assert_close(log_p, reference.log_prob(actions))
    torch.testing.assert_close(entropy, reference.entropy())
    torch.testing.assert_close(categorical.log_prob(logits, actions), reference.log_prob(actions))


def test_gumbel_sampling_follows_the_policy_and_is_seeded():
    from memo_rl.ppo import categorical

    probs = torch.tensor([0.1, 0.2, 0.3, 0.4])
    logits = probs.log().expand(200_000, 4)
    generator = torch.Generator().manual_seed(1)
    actions, log_p = categorical.sample(logits, generator)
    frequencies = torch.bincount(actions, minlength=4).float() / actions.numel()
    torch.testing.assert_close(frequencies, probs, atol=4e-3, rtol=0)  # ~5 standard errors
    torch.testing.assert_close(log_p, probs.log()[actions])
    again, _ = categorical.sample(logits, torch.Generator().manual_seed(1))
    assert torch.equal(actions, again)


def test_trailing_moving_average():
    import numpy as np

    from memo_rl.plots import smooth

    assert smooth(np.array([1.0, 2.0, 3.0, 4.0, 5.0]), 3).tolist() == [1.0, 1.5, 2.0, 3.0, 4.0]
    assert smooth(np.array([1.0, 2.0]), 1).tolist() == [1.0, 2.0]


def test_sequence_layout_round_trips():
    """to_sequences cuts [T, N] into K sequences per env as columns k * N + n; from_sequences undoes it."""
    from memo_rl.ppo.storage import from_sequences, to_sequences

    x = torch.arange(12 * 3 * 2).reshape(12, 3, 2)  # [T=12, N=3, 2]
    seqs = to_sequences(x, 4)  # [S=4, K*N=9, 2]
    assert seqs.shape == (4, 9, 2)
    torch.testing.assert_close(seqs[:, 1 * 3 + 2], x[4:8, 2])  # sequence k=1 of env n=2
    torch.testing.assert_close(from_sequences(seqs, 3), x)
