"""Problem ids come from data files: as artifact names they stay one harmless path component."""

from PIL import Image

from vtc_lab.infer.evaluate import EvalResults
from vtc_lab.infer.records import ProblemRecord


def test_memory_image_names_never_leave_their_folder():
    rec = ProblemRecord(problem_id="../../etc/passwd x", benchmark="local", sample=0, mode="optical",
                        seed=0, gold="1", status="max_rounds", output="", latency_s=0.0)
    rec.memory_images = [Image.new("RGB", (4, 4), "white")]
    ((name, _),) = EvalResults(records={"local/optical": [rec]}).memory_images(5)
    assert name == "local_optical_p.._.._etc_passwd_x_s0_00.png"
    assert "/" not in name and " " not in name
