"""Network description: layer sizes, activations, and one flat parameter buffer.

Every parameter of a network lives in one contiguous array (``params``); each
layer's weights (``n_in x n_out``, C order) and bias are views into it. The
gradient and optimizer-state buffers are twins of the same length and layout,
which keeps the optimizer one fused pass and save/load one array.
"""
import numpy as np

ACTIVATIONS = ("identity", "relu", "leaky_relu", "tanh", "sigmoid", "softplus")
ACTIVATION_CODES = {name: code for code, name in enumerate(ACTIVATIONS)}
DEFAULT_LEAKY_SLOPE = 0.01


def check_activation(name, param="activation"):
    """Return `name` if it is a supported activation, else raise ValueError."""
    if not isinstance(name, str) or name not in ACTIVATION_CODES:
        raise ValueError(
            f"{param}={name!r} is not supported; choose one of {', '.join(ACTIVATIONS)}"
        )
    return name


class Network:
    """A chain of dense layers over one flat parameter buffer.

    Parameters
    ----------
    sizes : sequence of int
        Widths from the input to the output, ``len(sizes) = n_layers + 1``.
    activations : sequence of str
        One activation per layer (see ``ACTIVATIONS``).
    dtype : {np.float32, np.float64}
        Floating type of the parameters.
    leaky_slope : float
        Negative-side slope of ``leaky_relu``.
    n_latent : int, default=0
        VAE: layer ``vae_block`` reads a sample z of width ``n_latent`` drawn
        from its input block ``[mu | log var]`` (``sizes[vae_block] ==
        2 * n_latent``), so its weights are ``n_latent x n_out``.
    vae_block : int, default=0
        The stats block of a VAE (0: no VAE bottleneck).
    n_extra : int, default=0
        Parameters after the last layer (a VAE's learned per-feature output
        log-variances), initialised to zero.

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        The flat parameter buffer.
    w_off, b_off : ndarray of int64
        Offsets of each layer's weights and bias in ``params``.
    extra_off : int
        Offset of the extra parameters in ``params``.
    """

    def __init__(self, sizes, activations, dtype=np.float32, leaky_slope=DEFAULT_LEAKY_SLOPE,
                 n_latent=0, vae_block=0, n_extra=0):
        sizes = [int(s) for s in sizes]
        activations = [check_activation(a) for a in activations]
        if len(sizes) < 2 or len(activations) != len(sizes) - 1:
            raise ValueError("a network needs len(sizes) == len(activations) + 1 >= 2")
        if min(sizes) < 1:
            raise ValueError(f"every layer needs at least one unit, got sizes {sizes}")
        self.sizes = np.asarray(sizes, dtype=np.int64)
        self.activations = tuple(activations)
        self.act_codes = np.asarray([ACTIVATION_CODES[a] for a in activations], dtype=np.int64)
        self.dtype = np.dtype(dtype)
        if self.dtype not in (np.float32, np.float64):
            raise ValueError(f"dtype must be float32 or float64, got {self.dtype}")
        self.leaky_slope = float(leaky_slope)
        self.n_latent, self.vae_block, self.n_extra = int(n_latent), int(vae_block), int(n_extra)
        if self.vae_block and not (0 < self.vae_block < len(activations)
                                   and sizes[self.vae_block] == 2 * self.n_latent >= 2):
            raise ValueError("a VAE's stats block must be an inner block of width 2 * n_latent")
        if self.n_extra < 0:
            raise ValueError("n_extra must be >= 0")
        w_off, b_off, pos = [], [], 0
        for layer, n_out in enumerate(sizes[1:]):
            w_off.append(pos)
            pos += self.in_width(layer) * n_out
            b_off.append(pos)
            pos += n_out
        self.w_off = np.asarray(w_off, dtype=np.int64)
        self.b_off = np.asarray(b_off, dtype=np.int64)
        self.extra_off = pos
        self.params = np.zeros(pos + self.n_extra, dtype=self.dtype)

    def in_width(self, layer):
        """Input width of ``layer``: z (``n_latent``) for a VAE's first decoder layer."""
        if self.vae_block and layer == self.vae_block:
            return self.n_latent
        return int(self.sizes[layer])

    def extra(self, buffer=None):
        """View of the extra parameters in `buffer` (default params)."""
        buf = self.params if buffer is None else buffer
        return buf[self.extra_off:self.extra_off + self.n_extra]

    @property
    def n_layers(self):
        return len(self.activations)

    @property
    def n_params(self):
        return self.params.shape[0]

    def weight(self, layer, buffer=None):
        """View of layer `layer`'s weights (n_in, n_out) in `buffer` (default params)."""
        buf = self.params if buffer is None else buffer
        n_in, n_out = self.in_width(layer), int(self.sizes[layer + 1])
        start = int(self.w_off[layer])
        return buf[start:start + n_in * n_out].reshape(n_in, n_out)

    def bias(self, layer, buffer=None):
        """View of layer `layer`'s bias (n_out,) in `buffer` (default params)."""
        buf = self.params if buffer is None else buffer
        start = int(self.b_off[layer])
        return buf[start:start + int(self.sizes[layer + 1])]

    def weight_mask(self):
        """Boolean mask over the flat buffer, True on weights (not biases)."""
        mask = np.zeros(self.n_params, dtype=bool)
        for layer in range(self.n_layers):
            mask[self.w_off[layer]:self.b_off[layer]] = True
        return mask

    def initialize(self, rng, scheme="auto"):
        """Draw initial weights (biases zero).

        ``"he"`` draws N(0, 2 / fan_in); ``"glorot"`` draws U(-a, a) with
        a = sqrt(6 / (fan_in + fan_out)); ``"auto"`` uses He for the ReLU family
        and Glorot otherwise, per layer, as the layer's activation suggests.
        """
        if scheme not in ("auto", "he", "glorot"):
            raise ValueError(f"init={scheme!r} is not supported; choose auto, he or glorot")
        self.params[:] = 0
        for layer, act in enumerate(self.activations):
            n_in, n_out = self.in_width(layer), int(self.sizes[layer + 1])
            use_he = scheme == "he" or (
                scheme == "auto" and act in ("relu", "leaky_relu", "softplus"))
            if use_he:
                values = rng.standard_normal((n_in, n_out)) * np.sqrt(2.0 / n_in)
            else:
                bound = np.sqrt(6.0 / (n_in + n_out))
                values = rng.uniform(-bound, bound, size=(n_in, n_out))
            self.weight(layer)[...] = values
        return self

    def spec(self):
        """The arrays the compiled kernels take, in their argument order."""
        return self.sizes, self.act_codes, self.w_off, self.b_off

    def to_state(self):
        """JSON-able description; the parameters travel separately."""
        return {
            "sizes": [int(s) for s in self.sizes],
            "activations": list(self.activations),
            "dtype": self.dtype.name,
            "leaky_slope": self.leaky_slope,
            "n_latent": self.n_latent,
            "vae_block": self.vae_block,
            "n_extra": self.n_extra,
        }

    @classmethod
    def from_state(cls, state, params):
        net = cls(state["sizes"], state["activations"], state["dtype"], state["leaky_slope"],
                  state.get("n_latent", 0), state.get("vae_block", 0), state.get("n_extra", 0))
        params = np.asarray(params)
        if params.shape != net.params.shape:
            raise ValueError(
                f"parameter buffer has shape {params.shape}, the network needs {net.params.shape}")
        net.params[:] = params
        return net
