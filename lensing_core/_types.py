"""Array type aliases shared by the core modules."""

from __future__ import annotations

from typing import TypeAlias

import numpy as np
import numpy.typing as npt

FloatArray: TypeAlias = npt.NDArray[np.floating]
ComplexArray: TypeAlias = npt.NDArray[np.complexfloating]
IntArray: TypeAlias = npt.NDArray[np.integer]
