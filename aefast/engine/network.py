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

    Attributes
    ----------
    params : ndarray of shape (n_params,)
        The flat parameter buffer.
    w_off, b_off : ndarray of int64
        Offsets of each layer's weights and bias in ``params``.
    """

    def __init__(self, sizes, activations, dtype=np.float32, leaky_slope=DEFAULT_LEAKY_SLOPE):
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
        w_off, b_off, pos = [], [], 0
        for n_in, n_out in zip(sizes[:-1], sizes[1:]):
            w_off.append(pos)
            pos += n_in * n_out
            b_off.append(pos)
            pos += n_out
        self.w_off = np.asarray(w_off, dtype=np.int64)
        self.b_off = np.asarray(b_off, dtype=np.int64)
        self.params = np.zeros(pos, dtype=self.dtype)

    @property
    def n_layers(self):
        return len(self.activations)

    @property
    def n_params(self):
        return self.params.shape[0]

    def weight(self, layer, buffer=None):
        """View of layer `layer`'s weights (n_in, n_out) in `buffer` (default params)."""
        buf = self.params if buffer is None else buffer
        n_in, n_out = int(self.sizes[layer]), int(self.sizes[layer + 1])
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
            n_in, n_out = int(self.sizes[layer]), int(self.sizes[layer + 1])
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
        }

    @classmethod
    def from_state(cls, state, params):
        net = cls(state["sizes"], state["activations"], state["dtype"], state["leaky_slope"])
        params = np.asarray(params)
        if params.shape != net.params.shape:
            raise ValueError(
                f"parameter buffer has shape {params.shape}, the network needs {net.params.shape}")
        net.params[:] = params
        return net
