"""Awkward real-world inputs of issue 12 against ``bmdqct.io.load_ct``.

The rule: a valid input reads with its true geometry (LPS affine in mm, HU values); an
invalid one raises an error of :mod:`bmdqct.errors` that names the file or folder and
what was expected -- never a raw library traceback, never a silent wrong read. Every
input is written here, small (16 slices of 64 x 64), with pydicom, nibabel or SimpleITK.
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk
from pydicom.dataelem import DataElement

from bmdqct.errors import DicomSeriesError, GeometryError, InputError
from bmdqct.io import list_series, load_ct, write_dicom_series, write_nifti
from bmdqct.volume import _LPS_TO_RAS, CTVolume, to_canonical

SHAPE = (16, 64, 64)


def ramp(shape=SHAPE, spacing=(2.5, 0.7, 0.7), origin=(-22.0, -30.0, 100.0)) -> CTVolume:
    """Canonical CT with integer HU -1000..1999 that differ from voxel to voxel."""
    hu = (np.arange(np.prod(shape)) % 3000 - 1000).reshape(shape).astype(np.float32)
    return CTVolume.from_spacing(hu, spacing=spacing, origin=origin)


REF = ramp()


def assert_reads_as(path, expected: CTVolume):
    ct = load_ct(path)
    expected = to_canonical(expected)
    assert ct.shape == expected.shape
    np.testing.assert_allclose(ct.affine, expected.affine, atol=1e-4)
    np.testing.assert_array_equal(ct.hu, expected.hu)
    return ct


def edit(folder, change, names=None):
    """Apply `change(ds)` to the files of `folder` (all, or those in `names`) and save them."""
    for path in sorted(folder.iterdir()):
        if path.is_file() and (names is None or path.name in names):
            ds = pydicom.dcmread(path)
            change(ds)
            ds.save_as(path)


def replace(keyword, value, vr="LO"):
    """A change that stores `value` under `keyword` with a VR of our choice (malformed values)."""
    tag = pydicom.datadict.tag_for_keyword(keyword)

    def change(ds):
        if tag in ds:
            del ds[tag]
        ds.add(DataElement(tag, vr, value))
    return change


def nifti_expected(data, ras_affine) -> CTVolume:
    return CTVolume(np.asarray(data, np.float32), _LPS_TO_RAS @ ras_affine)


RAS = np.array([[-0.7, 0, 0, 22.0], [0, -0.7, 0, 30.0], [0, 0, 2.5, 100.0], [0, 0, 0, 1]])
NII_DATA = np.ascontiguousarray(np.transpose(REF.hu, (2, 1, 0))).astype(np.int16)


# --------------------------------------------------------------------------- DICOM: files and folders


def test_linked_series_folder_is_followed_once(tmp_path):
    series = write_dicom_series(REF, tmp_path / "store" / "series")
    study = tmp_path / "study"
    study.mkdir()
    (study / "CT").symlink_to(series, target_is_directory=True)
    (study / "again").symlink_to(study, target_is_directory=True)  # a loop: searched once
    assert_reads_as(study, REF)


def test_dicomdir_path_reads_its_folder(tmp_path):
    from pydicom.dataset import Dataset, FileMetaDataset

    series = write_dicom_series(REF, tmp_path / "src")
    cd = tmp_path / "cd"
    (cd / "DICOM" / "PT0" / "ST0").mkdir(parents=True)
    for k, path in enumerate(sorted(series.iterdir())):  # a CD layout: IM files without suffix
        shutil.move(path, cd / "DICOM" / "PT0" / "ST0" / f"IM{k}")
    meta = FileMetaDataset()
    meta.MediaStorageSOPClassUID = "1.2.840.10008.1.3.10"  # Media Storage Directory Storage
    meta.MediaStorageSOPInstanceUID = pydicom.uid.generate_uid()
    meta.TransferSyntaxUID = pydicom.uid.ExplicitVRLittleEndian
    dicomdir = Dataset()
    dicomdir.file_meta, dicomdir.FileSetID, dicomdir.DirectoryRecordSequence = meta, "CD", []
    dicomdir.save_as(cd / "DICOMDIR", enforce_file_format=True)
    assert_reads_as(cd, REF)
    assert_reads_as(cd / "DICOMDIR", REF)


def test_file_cut_inside_its_header_is_refused(tmp_path):
    folder = write_dicom_series(REF, tmp_path)
    victim = folder / "00005.dcm"
    victim.write_bytes(victim.read_bytes()[:200])  # file meta only: pydicom reads it silently
    with pytest.raises(DicomSeriesError, match=r"00005\.dcm: truncated or corrupt DICOM file"):
        load_ct(folder)


def test_files_that_are_not_dicom_are_skipped_with_a_warning(tmp_path, caplog):
    folder = write_dicom_series(REF, tmp_path / "ct")
    (folder / "empty.dcm").write_bytes(b"")
    (folder / "cut.dcm").write_bytes((folder / "00001.dcm").read_bytes()[:132])  # "DICM" only
    (folder / "Thumbs.db").write_bytes(os.urandom(600))
    (folder / "notes").mkdir()
    (folder / "notes" / "readme.txt").write_text("exported by PACS\n")
    with caplog.at_level(logging.WARNING, logger="bmdqct"):
        assert_reads_as(folder, REF)
    assert "4 file(s) skipped, not readable as DICOM" in caplog.text
    assert "cut.dcm" in caplog.text and "empty.dcm" in caplog.text
    # and the result says so: a files_skipped input flag naming some of them
    flags = dict(load_ct(folder).metadata["input_flags"])
    assert flags["files_skipped"].startswith(f"4 file(s) in {folder} are not readable as DICOM")
    assert "cut.dcm" in flags["files_skipped"]
    assert "files_skipped" not in dict(load_ct(write_dicom_series(REF, tmp_path / "clean")).metadata["input_flags"])


# --------------------------------------------------------------------------- DICOM: duplicates


def test_copy_with_position_written_differently_is_a_copy(tmp_path):
    folder = write_dicom_series(REF, tmp_path)
    ds = pydicom.dcmread(folder / "00004.dcm")
    ds.ImagePositionPatient = [f"{float(v):.4f}" for v in ds.ImagePositionPatient]
    ds.save_as(folder / "copy_of_4")
    assert_reads_as(folder, REF)


def test_copy_with_other_pixels_is_refused(tmp_path):
    folder = write_dicom_series(REF, tmp_path)
    ds = pydicom.dcmread(folder / "00004.dcm")
    ds.PixelData = np.zeros(SHAPE[1:], np.int16).tobytes()  # same SOPInstanceUID, other image
    ds.save_as(folder / "copy_of_4")
    with pytest.raises(DicomSeriesError, match=r"00004\.dcm and .*copy_of_4 have the same "
                                               r"SOPInstanceUID and position but different pixels"):
        load_ct(folder)


def test_copied_multiframe_file_is_a_copy(tmp_path):
    folder = write_dicom_series(REF, tmp_path, multiframe=True)
    shutil.copy(folder / "ct.dcm", folder / "ct_copy.dcm")
    assert_reads_as(folder, REF)
    ds = pydicom.dcmread(folder / "ct_copy.dcm")
    ds.SeriesDescription = "edited"
    ds.save_as(folder / "ct_copy.dcm")
    with pytest.raises(DicomSeriesError, match="same SOPInstanceUID but different contents"):
        load_ct(folder)


# --------------------------------------------------------------------------- DICOM: malformed tags


@pytest.mark.parametrize("change, names, keyword", [
    (replace("ImagePositionPatient", ["nan", "0", "0"]), {"00003.dcm"}, "ImagePositionPatient"),
    (replace("ImagePositionPatient", ["abc", "1", "2"]), {"00003.dcm"}, "ImagePositionPatient"),
    (replace("ImageOrientationPatient", ["1", "0", "0", "0", "1"]), None, "ImageOrientationPatient"),
    (replace("PixelSpacing", ["0", "0.7"], "DS"), None, "PixelSpacing"),
    (replace("PixelSpacing", ["-0.7", "0.7"], "DS"), None, "PixelSpacing"),
    (replace("PixelSpacing", "0.7", "DS"), None, "PixelSpacing"),
    (replace("PixelSpacing", ["0.7", "x"]), None, "PixelSpacing"),
], ids=["ipp-nan", "ipp-text", "iop-5-values", "spacing-0", "spacing-negative", "spacing-1-value",
        "spacing-text"])
def test_malformed_geometry_tag_is_refused(tmp_path, change, names, keyword):
    folder = write_dicom_series(REF, tmp_path)
    edit(folder, change, names)
    with pytest.raises(DicomSeriesError, match=rf"\.dcm: {keyword} is missing or malformed"):
        load_ct(folder)


def test_zero_orientation_vectors_are_refused(tmp_path):
    folder = write_dicom_series(REF, tmp_path)
    edit(folder, replace("ImageOrientationPatient", ["0"] * 6, "DS"))
    with pytest.raises(DicomSeriesError, match="ImageOrientationPatient .* holds a zero direction"):
        load_ct(folder)


def test_text_rescale_intercept_and_frame_count_are_refused(tmp_path):
    folder = write_dicom_series(REF, tmp_path / "a")
    edit(folder, replace("RescaleIntercept", "abc"), {"00003.dcm"})
    with pytest.raises(DicomSeriesError, match=r"00003\.dcm: RescaleIntercept is 'abc'; expected a number"):
        load_ct(folder)
    folder = write_dicom_series(REF, tmp_path / "b")
    edit(folder, replace("NumberOfFrames", "x"), {"00003.dcm"})
    with pytest.raises(DicomSeriesError, match=r"00003\.dcm: truncated or corrupt"):
        load_ct(folder)


def test_multiframe_with_too_few_frame_items_is_refused(tmp_path):
    folder = write_dicom_series(REF, tmp_path, multiframe=True)

    def drop(ds):
        ds.PerFrameFunctionalGroupsSequence = ds.PerFrameFunctionalGroupsSequence[:10]
    edit(folder, drop)
    with pytest.raises(DicomSeriesError, match=r"ct\.dcm: NumberOfFrames is 16 but "
                                               r"PerFrameFunctionalGroupsSequence has 10 item"):
        load_ct(folder)


@pytest.mark.parametrize("thickness", ["-2.5", "0"])
def test_non_positive_slice_thickness_is_not_reported(tmp_path, thickness):
    folder = write_dicom_series(REF, tmp_path)
    edit(folder, lambda ds: setattr(ds, "SliceThickness", thickness))
    ct = assert_reads_as(folder, REF)  # the geometry comes from the positions
    assert ct.metadata["slice_thickness_mm"] is None
    assert list_series(folder)[0].slice_thickness_mm is None


def test_colour_secondary_capture_is_refused(tmp_path):
    folder = write_dicom_series(REF, tmp_path)

    def rgb(ds):
        ds.SOPClassUID = ds.file_meta.MediaStorageSOPClassUID = "1.2.840.10008.5.1.4.1.1.7"
        ds.SamplesPerPixel, ds.PhotometricInterpretation, ds.PlanarConfiguration = 3, "RGB", 0
        ds.BitsAllocated, ds.BitsStored, ds.HighBit, ds.PixelRepresentation = 8, 8, 7, 0
        ds.PixelData = np.zeros(SHAPE[1:] + (3,), np.uint8).tobytes()
    edit(folder, rgb)
    with pytest.raises(DicomSeriesError, match=r"00000\.dcm: a colour image \(SamplesPerPixel 3, "
                                               r"PhotometricInterpretation RGB\); expected grayscale"):
        load_ct(folder)


# --------------------------------------------------------------------------- DICOM: encodings


def test_raw_datasets_without_preamble_read(tmp_path):
    from pydicom.filebase import DicomBytesIO
    from pydicom.filewriter import write_dataset

    folder = write_dicom_series(REF, tmp_path)
    for path in sorted(folder.iterdir()):  # old software: implicit VR, no preamble, no file meta
        ds = pydicom.dcmread(path)
        del ds.file_meta
        buffer = DicomBytesIO()
        buffer.is_little_endian, buffer.is_implicit_VR = True, True
        write_dataset(buffer, ds)
        path.write_bytes(buffer.getvalue())
    assert_reads_as(folder, REF)


@pytest.mark.parametrize("syntax", ["DeflatedExplicitVRLittleEndian", "ExplicitVRBigEndian"])
def test_deflated_and_big_endian_series_read(tmp_path, syntax):
    uid = getattr(pydicom.uid, syntax)
    folder = write_dicom_series(REF, tmp_path)
    for path in sorted(folder.iterdir()):
        ds = pydicom.dcmread(path)
        if uid == pydicom.uid.ExplicitVRBigEndian:
            ds.PixelData = ds.pixel_array.astype(">i2").tobytes()
        ds.file_meta.TransferSyntaxUID = uid
        pydicom.dcmwrite(path, ds, little_endian=uid != pydicom.uid.ExplicitVRBigEndian,
                         implicit_vr=False, enforce_file_format=True)
    assert_reads_as(folder, REF)


@pytest.mark.parametrize("bits_stored, signed", [(12, True), (12, False), (16, False)])
def test_bits_stored_and_pixel_representation(tmp_path, bits_stored, signed):
    # intercept 0 keeps -1000..1999 inside 12 signed bits; unsigned needs intercept -1024
    folder = write_dicom_series(REF, tmp_path, RescaleIntercept=0.0 if signed else -1024.0)

    def change(ds):
        stored = ds.pixel_array.astype(np.int32)
        ds.BitsStored, ds.HighBit, ds.PixelRepresentation = bits_stored, bits_stored - 1, int(signed)
        ds.PixelData = stored.astype(np.int16 if signed else np.uint16).tobytes()
    edit(folder, change)
    assert_reads_as(folder, REF)


# --------------------------------------------------------------------------- NIfTI


def test_nifti_whose_name_lies_about_gzip_reads(tmp_path):
    nib.save(nib.Nifti1Image(NII_DATA, RAS), tmp_path / "plain.nii")
    shutil.copy(tmp_path / "plain.nii", tmp_path / "not_gzip.nii.gz")
    (tmp_path / "gzip.nii").write_bytes(gzip.compress((tmp_path / "plain.nii").read_bytes()))
    nib.save(nib.Nifti2Image(NII_DATA, RAS), tmp_path / "n2.nii")
    shutil.copy(tmp_path / "n2.nii", tmp_path / "n2_not_gzip.nii.gz")
    for name in ("not_gzip.nii.gz", "gzip.nii", "n2_not_gzip.nii.gz"):
        assert_reads_as(tmp_path / name, nifti_expected(NII_DATA, RAS))
    (tmp_path / "text.nii.gz").write_bytes(b"not a NIfTI file")
    with pytest.raises(InputError, match=r"text\.nii\.gz: cannot read this NIfTI file \(no NIfTI header"):
        load_ct(tmp_path / "text.nii.gz")


def test_nan_voxels_are_refused(tmp_path):
    data = NII_DATA.astype(np.float32)
    data[0, 0, 0], data[5, 5, 5] = np.nan, np.inf
    nib.save(nib.Nifti1Image(data, RAS), tmp_path / "nan.nii.gz")
    with pytest.raises(InputError, match=r"nan\.nii\.gz: 2 voxel\(s\) .* are NaN or infinite"):
        load_ct(tmp_path / "nan.nii.gz")
    image = sitk.GetImageFromArray(np.full(SHAPE, np.nan, np.float32))
    sitk.WriteImage(image, str(tmp_path / "nan.mha"))
    with pytest.raises(InputError, match=r"nan\.mha: 65536 voxel\(s\) \(100\.00%\) are NaN"):
        load_ct(tmp_path / "nan.mha")


def test_8bit_image_is_refused_unless_scaled(tmp_path):
    labels = (NII_DATA % 30).astype(np.uint8)  # a label map passed as the CT
    nib.save(nib.Nifti1Image(labels, RAS), tmp_path / "labels.nii.gz")
    with pytest.raises(InputError, match=r"labels\.nii\.gz: uint8 values \(0\.\.29\) cannot be "
                                         r"Hounsfield units"):
        load_ct(tmp_path / "labels.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(labels), str(tmp_path / "seg.nrrd"))
    with pytest.raises(InputError, match=r"seg\.nrrd: uint8 values"):
        load_ct(tmp_path / "seg.nrrd")
    stored = ((NII_DATA.astype(np.int32) + 1000) // 12).astype(np.uint8)  # 8-bit with scl_slope
    image = nib.Nifti1Image(stored, RAS)
    image.header.set_slope_inter(12.0, -1000.0)
    nib.save(image, tmp_path / "scaled.nii.gz")
    assert_reads_as(tmp_path / "scaled.nii.gz", nifti_expected(stored * 12.0 - 1000.0, RAS))


def test_single_slice_volume_is_refused(tmp_path):
    nib.save(nib.Nifti1Image(NII_DATA[:, :, :1], RAS), tmp_path / "slice.nii.gz")
    with pytest.raises(InputError, match=r"slice\.nii\.gz: image of shape \(64, 64, 1\): a single "
                                         "2-D slice; expected a 3-D volume of at least 2 slices"):
        load_ct(tmp_path / "slice.nii.gz")
    sitk.WriteImage(sitk.GetImageFromArray(REF.hu[:1].astype(np.int16)), str(tmp_path / "s.mha"))
    with pytest.raises(InputError, match=r"s\.mha: image of shape \(1, 64, 64\): a single 2-D slice"):
        load_ct(tmp_path / "s.mha")
    nib.save(nib.Nifti1Image(np.zeros((0, 4, 4), np.int16), RAS), tmp_path / "none.nii")
    with pytest.raises(InputError, match=r"none\.nii: image of shape \(0, 4, 4\): no voxels"):
        load_ct(tmp_path / "none.nii")


def test_complex_and_rgb_nifti_are_refused(tmp_path):
    nib.save(nib.Nifti1Image(NII_DATA.astype(np.complex64), RAS), tmp_path / "c.nii")
    with pytest.raises(InputError, match=r"c\.nii: voxels of type complex64"):
        load_ct(tmp_path / "c.nii")
    rgb = np.zeros(NII_DATA.shape, dtype=[("R", "u1"), ("G", "u1"), ("B", "u1")])
    nib.save(nib.Nifti1Image(rgb, RAS), tmp_path / "rgb.nii")
    with pytest.raises(InputError, match=r"rgb\.nii: voxels of type"):
        load_ct(tmp_path / "rgb.nii")


@pytest.mark.parametrize("srow", [[np.nan, 0, 0, 0], [0, 0, 0, 0]], ids=["nan", "zero"])
def test_nifti_with_unusable_affine_is_refused(tmp_path, srow):
    nib.save(nib.Nifti1Image(NII_DATA, RAS), tmp_path / "plain.nii")
    raw = (tmp_path / "plain.nii").read_bytes()
    with open(tmp_path / "plain.nii", "rb") as fh:
        header = nib.Nifti1Header.from_fileobj(fh)
    header["qform_code"], header["srow_x"] = 0, srow  # written as is (nib.save would fix it)
    with open(tmp_path / "a.nii", "wb") as fh:
        header.write_to(fh)
        fh.write(raw[header.get_data_offset():])
    with pytest.raises(GeometryError, match=r"a\.nii: the NIfTI affine \(sform/qform\) is not "
                                            "finite or not invertible"):
        load_ct(tmp_path / "a.nii")


@pytest.mark.parametrize("name", ["ct.nii.gz", "ct.mha", "IM0001"])
def test_empty_file_is_refused(tmp_path, name):
    (tmp_path / name).write_bytes(b"")
    with pytest.raises(InputError, match=rf"{name}: empty file \(0 bytes\)"):
        load_ct(tmp_path / name)


def test_empty_path_is_refused():
    with pytest.raises(InputError, match="empty path ''"):
        load_ct("")


def test_nifti_4d_and_scaling(tmp_path):
    nib.save(nib.Nifti1Image(NII_DATA[..., None], RAS), tmp_path / "one.nii.gz")
    assert_reads_as(tmp_path / "one.nii.gz", nifti_expected(NII_DATA, RAS))
    nib.save(nib.Nifti1Image(np.stack([NII_DATA] * 2, -1), RAS), tmp_path / "two.nii.gz")
    with pytest.raises(InputError, match=r"two\.nii\.gz: image of shape \(64, 64, 16, 2\); "
                                         "expected a 3-D volume"):
        load_ct(tmp_path / "two.nii.gz")
    image = nib.Nifti1Image(((NII_DATA + 1024) // 2).astype(np.int16), RAS)
    image.header.set_slope_inter(2.0, -1024.0)
    nib.save(image, tmp_path / "scaled.nii.gz")
    assert_reads_as(tmp_path / "scaled.nii.gz",
                    nifti_expected((NII_DATA + 1024) // 2 * 2.0 - 1024.0, RAS))


@pytest.mark.parametrize("which", ["qform", "sform", "both"])
def test_nifti_qform_sform(tmp_path, which):
    other = RAS.copy()
    other[:3, 3] += 50.0
    image = nib.Nifti1Image(NII_DATA, None)
    image.set_qform(RAS if which != "sform" else None, code=1 if which != "sform" else 0)
    image.set_sform(RAS if which == "sform" else other if which == "both" else None,
                    code=0 if which == "qform" else 2)
    nib.save(image, tmp_path / "q.nii")
    # NIfTI: the sform, when set, wins over the qform (as nibabel, ITK and dcm2niix read it)
    assert_reads_as(tmp_path / "q.nii", nifti_expected(NII_DATA, other if which == "both" else RAS))


@pytest.mark.parametrize("codes", ["LAS", "PIR", "ILA"])
def test_nifti_orientation_maps_voxels_to_lps(tmp_path, codes):
    import nibabel.orientations as nio

    ras = np.eye(4)
    ras[:3, :3] = 0
    for axis, (target, sign) in enumerate(nio.axcodes2ornt(tuple(codes))):
        ras[int(target), axis] = sign * (0.7, 0.8, 2.5)[axis]
    ras[:3, 3] = (11.0, -7.0, 33.0)
    nib.save(nib.Nifti1Image(NII_DATA, ras), tmp_path / "o.nii.gz")
    ct = assert_reads_as(tmp_path / "o.nii.gz", nifti_expected(NII_DATA, ras))
    ijk = (3, 5, 7)
    x, y, z, _ = nib.load(tmp_path / "o.nii.gz").affine @ (*ijk, 1)
    index = np.rint(ct.world_to_index((-x, -y, z))).astype(int)  # RAS -> LPS
    assert ct.hu[tuple(index)] == NII_DATA[ijk]


# --------------------------------------------------------------------------- MetaImage / NRRD


def itk_image(direction=None):
    image = sitk.GetImageFromArray(REF.hu.astype(np.int16))
    image.SetSpacing((0.7, 0.7, 2.5))
    image.SetOrigin((-22.0, -30.0, 100.0))
    if direction is not None:
        image.SetDirection(direction)
    return image


def itk_expected(image) -> CTVolume:
    affine = np.eye(4)
    direction = np.reshape(image.GetDirection(), (3, 3))
    affine[:3, :3] = (direction * np.asarray(image.GetSpacing()))[:, ::-1]
    affine[:3, 3] = image.GetOrigin()
    return CTVolume(sitk.GetArrayFromImage(image).astype(np.float32), affine)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd"])
def test_4d_image_with_one_volume_reads(tmp_path, suffix):
    image = itk_image(direction=(1, 0, 0, 0, 0, 1, 0, -1, 0))
    sitk.WriteImage(sitk.JoinSeries([image]), str(tmp_path / f"one{suffix}"))
    assert_reads_as(tmp_path / f"one{suffix}", itk_expected(image))
    sitk.WriteImage(sitk.JoinSeries([image, image]), str(tmp_path / f"two{suffix}"))
    with pytest.raises(InputError, match=r"4-D image of size \(64, 64, 16, 2\) .*expected a 3-D "
                                         "scalar volume"):
        load_ct(tmp_path / f"two{suffix}")


def test_detached_headers(tmp_path):
    sitk.WriteImage(itk_image(), str(tmp_path / "ct.mhd"))
    sitk.WriteImage(itk_image(), str(tmp_path / "ct.nhdr"))
    assert_reads_as(tmp_path / "ct.nhdr", itk_expected(itk_image()))
    (tmp_path / "ct.raw").unlink()  # the data file of both headers
    with pytest.raises(InputError, match=r"ct\.mhd: its data file ct\.raw \(ElementDataFile\) is "
                                         "missing"):
        load_ct(tmp_path / "ct.mhd")
    with pytest.raises(InputError, match=r"ct\.nhdr: cannot read this image \(.*couldn't open "
                                         r".*ct\.raw"):
        load_ct(tmp_path / "ct.nhdr")


# --------------------------------------------------------------------------- JSON sidecars


def _small_ct(metadata=None) -> CTVolume:
    """A 4 x 6 x 6 soft-tissue volume on 2 x 1 x 1 mm voxels, with `metadata`."""
    return CTVolume.from_spacing(np.full((4, 6, 6), 40.0), (2.0, 1.0, 1.0), metadata=metadata or {})


def test_sidecar_round_trip_carries_the_scanner_metadata(tmp_path):
    from bmdqct.io._read import SIDECAR_KEYS

    vol = _small_ct({"kvp": 100.0, "study_date": "2024-06-25", "device_serial": "SYN-0002",
                     "manufacturer": "bmdqct-synthetic", "source": "/not/this"})
    path = write_nifti(vol, tmp_path / "ct.nii.gz", sidecar=True)
    side = json.loads((tmp_path / "ct.json").read_text())
    assert side == {"kvp": 100.0, "study_date": "2024-06-25", "device_serial": "SYN-0002",
                    "manufacturer": "bmdqct-synthetic"}                        # no source, no geometry
    assert set(side) <= set(SIDECAR_KEYS)
    ct = load_ct(path)
    assert (ct.metadata["kvp"], ct.metadata["study_date"], ct.metadata["device_serial"]) == (
        100.0, "2024-06-25", "SYN-0002")
    assert ct.metadata["source"] == str(path)
    write_nifti(vol, tmp_path / "plain.nii.gz")                                 # no sidecar unasked
    assert not (tmp_path / "plain.json").exists()


def test_dcm2niix_style_sidecar_is_read(tmp_path):
    vol = _small_ct()
    path = write_nifti(vol, tmp_path / "scan.NII.GZ")
    (tmp_path / "scan.json").write_text(json.dumps({
        "Modality": "CT", "Manufacturer": "SIEMENS", "ManufacturersModelName": "SOMATOM Force",
        "DeviceSerialNumber": "73561", "KVP": 120, "AcquisitionDateTime": "2023-11-02T10:14:05.000000",
        "ConvolutionKernel": "Br40", "SliceThickness": 1, "ImageType": ["ORIGINAL", "PRIMARY"],
        "ConversionSoftware": "dcm2niix"}))
    meta = load_ct(path).metadata
    assert (meta["manufacturer"], meta["model"], meta["device_serial"], meta["kvp"]) == (
        "SIEMENS", "SOMATOM Force", "73561", 120.0)
    assert (meta["acquisition_date"], meta["kernel"], meta["slice_thickness_mm"]) == ("2023-11-02", "Br40", 1.0)


@pytest.mark.parametrize("text, match", [
    ("{not json", "cannot be read"),
    ("[1, 2]", "must be a JSON object"),
])
def test_broken_sidecar_is_refused_naming_it(tmp_path, text, match):
    vol = _small_ct()
    path = write_nifti(vol, tmp_path / "ct.nii.gz")
    (tmp_path / "ct.json").write_text(text)
    with pytest.raises(InputError, match=match) as info:
        load_ct(path)
    assert str(tmp_path / "ct.json") in str(info.value)


@pytest.mark.parametrize("text, message", [
    ('{"KVP": "high", "StationName": "CT1"}', "KVP = 'high' is not valid"),
    ('{"kvp": 5000, "StationName": "CT1"}', "kvp = 5000 is not valid"),
    ('{"StudyDate": "yesterday", "StationName": "CT1"}', "StudyDate = 'yesterday' is not valid"),
])
def test_a_bad_sidecar_value_is_left_out_with_a_warning(tmp_path, caplog, text, message):
    vol = _small_ct()
    path = write_nifti(vol, tmp_path / "ct.nii.gz")
    (tmp_path / "ct.json").write_text(text)
    with caplog.at_level(logging.WARNING, logger="bmdqct"):
        meta = load_ct(path).metadata
    assert message in caplog.text and str(tmp_path / "ct.json") in caplog.text
    assert meta["station"] == "CT1" and meta["kvp"] is None and meta["study_date"] is None


def test_sidecar_writer_leaves_out_what_the_reader_would_refuse(tmp_path, caplog):
    vol = _small_ct({"kvp": 0.0, "exposure_mas": 12.0, "station": "CT1"})
    with caplog.at_level(logging.WARNING, logger="bmdqct"):
        path = write_nifti(vol, tmp_path / "ct.nii.gz", sidecar=True)
    assert json.loads((tmp_path / "ct.json").read_text()) == {"exposure_mas": 12.0, "station": "CT1"}
    assert "kvp = 0.0 not written" in caplog.text
    assert load_ct(path).metadata["exposure_mas"] == 12.0


@pytest.mark.parametrize("unit, per_mm", [("meter", 1e-3), ("micron", 1e3), ("mm", 1.0), ("unknown", 1.0)])
def test_nifti_spatial_unit_is_honoured(tmp_path, unit, per_mm):
    """A NIfTI whose header gives its geometry in metres or microns reads in mm."""
    from bmdqct.io import load_labels

    hu = np.full((6, 5, 4), -1000.0, np.float32)       # x, y, z of the file
    hu[2:4, 2:4, 1:3] = 300.0
    affine = np.diag([0.8 * per_mm, 0.8 * per_mm, 2.0 * per_mm, 1.0])
    affine[:3, 3] = np.array([-10.0, 20.0, 30.0]) * per_mm
    image = nib.Nifti1Image(hu, affine)
    image.header.set_xyzt_units(unit)
    nib.save(image, tmp_path / "ct.nii.gz")
    ct = load_ct(tmp_path / "ct.nii.gz")
    np.testing.assert_allclose(ct.spacing, (2.0, 0.8, 0.8))
    # the bright block's centre: file index (2.5, 2.5, 1.5) -> RAS (-8, 22, 33) mm -> LPS (8, -22, 33)
    centre = ct.index_to_world(np.argwhere(ct.hu > 0).mean(axis=0))
    np.testing.assert_allclose(centre, (8.0, -22.0, 33.0), atol=1e-6)
    labels = nib.Nifti1Image((hu > 0).astype(np.int16), affine)
    labels.header.set_xyzt_units(unit)
    nib.save(labels, tmp_path / "seg.nii.gz")
    assert load_labels(tmp_path / "seg.nii.gz", like=ct).labels.sum() == 8


def test_nifti_with_a_nonstandard_time_unit_reads_in_mm(tmp_path):
    """xyzt_units 66 (mm, with a time code nibabel does not know) and 4 (no spatial code) read as mm."""
    hu = np.full((4, 4, 3), -1000.0, np.float32)
    hu[1:3, 1:3, 1] = 300.0
    for code in (66, 4):
        image = nib.Nifti1Image(hu, np.diag([0.8, 0.8, 2.0, 1.0]))
        image.header["xyzt_units"] = code
        nib.save(image, tmp_path / f"ct{code}.nii.gz")
        np.testing.assert_allclose(load_ct(tmp_path / f"ct{code}.nii.gz").spacing, (2.0, 0.8, 0.8))
