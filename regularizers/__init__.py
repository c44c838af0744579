"""Parameter regularizers: penalties on how far the weights move from their initial values.

A regularizer supplies ``penalty(model, init_state) -> Tensor`` (and may supply
``prepare(model, init_state, ctx)`` for one-off work such as a Fisher pass); the trainer adds
``lambda_reg * penalty`` to the method's loss and knows nothing else about it.
"""

from snap_bench.regularizers.base import Regularizer, safe_root  # noqa: F401
from snap_bench.regularizers.swd import sliced_wasserstein  # noqa: F401
