"""Teacher loaders (re-exported): they live in :mod:`realtime.teachers`, since the live app runs a
guided style's teacher too."""

from realtime.teachers import (TEACHER_OPTIONS, CycleGANGenerator, Teacher, TeacherError, count_conv_macs,
                               load_teacher, parse_input_value, parse_value_range, sha256_file)

__all__ = ["Teacher", "TeacherError", "load_teacher", "sha256_file", "parse_value_range", "parse_input_value",
           "CycleGANGenerator", "TEACHER_OPTIONS", "count_conv_macs"]
