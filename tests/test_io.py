"""Tests of bmdqct.io: readers, writers, DICOM geometry rules, error messages.

Synthetic data comes from ``write_dicom_series`` / ``write_nifti`` / SimpleITK writers;
real scans from ``../shared/data/real`` (fixture ``real_data``).
"""

from __future__ import annotations

import json
import logging
import random
import shutil

import nibabel as nib
import numpy as np
import pydicom
import pytest
import SimpleITK as sitk

from bmdqct.cli import main
from bmdqct.errors import DicomSeriesError, GeometryError, InputError
from bmdqct.io import list_series, load_ct, load_labels, write_dicom_series, write_nifti
from bmdqct.preprocess import resample
from bmdqct.volume import METADATA_KEYS, CTVolume, LabelVolume, to_canonical

# NIfTI stores the sform as float32: |x| < 1000 mm -> rounding below 1e-4 mm.
WORLD_TOL_MM = 1e-4


def ramp_ct(shape=(6, 7, 8), spacing=(2.0, 0.75, 0.8), origin=(-10.0, 20.0, 30.0)):
    """Canonical CT with distinct integer HU values (-1000 ... ) on a non-trivial grid."""
    hu = (np.arange(np.prod(shape)) % 3000 - 1000).reshape(shape).astype(np.float32)
    return CTVolume.from_spacing(hu, spacing=spacing, origin=origin)


def world_ramp_ct(affine, shape, coefficients=(3.0, -2.0, 5.0)):
    """CT whose HU is a linear function of the LPS position (exact under linear resampling)."""
    vol = CTVolume(np.zeros(shape), affine)
    world = vol.index_to_world(np.indices(shape).reshape(3, -1).T)
    return CTVolume((world @ np.asarray(coefficients)).reshape(shape), affine)


def rotation_z(deg):
    t = np.radians(deg)
    return np.array([[np.cos(t), -np.sin(t), 0], [np.sin(t), np.cos(t), 0], [0, 0, 1]])


def canonical_affine(spacing, origin=(0.0, 0.0, 0.0)):
    return np.array(CTVolume.from_spacing(np.zeros((1, 1, 1)), spacing=spacing,
                                          origin=origin).affine)


def shuffle_into(folder, target, seed=0):
    """Move DICOM files into a nested folder under random names without suffix."""
    files = sorted(folder.iterdir())
    names = [f"img{n}" for n in random.Random(seed).sample(range(1000, 9999), len(files))]
    (target / "nested" / "deeper").mkdir(parents=True)
    for file, name in zip(files, names):
        shutil.move(file, target / "nested" / "deeper" / name)
    return target


@pytest.fixture(scope="module")
def lidc_chest(real_data):
    """The 275-slice LIDC series, read once per module (about 0.5 s)."""
    return load_ct(real_data / "lidc_0314_chest" / "dicom")


@pytest.fixture(scope="module")
def ts_ct(real_data):
    return load_ct(real_data / "ts_abdomen_3mm" / "ct.nii.gz")


# --------------------------------------------------------------------------- real data


def test_ts_abdomen_loads_canonical(ts_ct):
    assert ts_ct.shape == (112, 101, 122)  # stored RAS (122, 101, 112)
    assert ts_ct.spacing == pytest.approx((3.0, 3.0, 3.0))
    assert ts_ct.orientation == ("S", "P", "L")
    assert (ts_ct.hu.min(), ts_ct.hu.max()) == (-1207.0, 3382.0)
    assert ts_ct.metadata["input_orientation"] == ("R", "A", "S")
    assert ts_ct.metadata["input_shape"] == (122, 101, 112)
    assert ts_ct.metadata["format"] == "nifti" and ts_ct.metadata["padding_hu"] is None
    assert set(METADATA_KEYS) <= set(ts_ct.metadata)
    assert ts_ct.metadata["kvp"] is None  # NIfTI has no scanner tags: None, never invented


def test_totalsegmentator_bodies_are_bone(real_data, ts_ct):
    """T12/L1/L2 body medians above +100 HU (an orientation mistake gives < 70 HU)."""
    folder = real_data / "ts_abdomen_3mm"
    levels = load_labels(folder / "totalseg_labels.nii.gz", like=ts_ct, scheme="totalsegmentator")
    body = load_labels(folder / "totalseg_vertebrae_body.nii.gz", like=ts_ct)
    assert levels.orientation == ("S", "P", "L") and levels.shape == ts_ct.shape
    assert {k: levels.names[k] for k in ("T12", "L1", "L2")} == {"T12": 19, "L1": 20, "L2": 21}
    assert body.names == {}
    medians = {lv: float(np.median(ts_ct.hu[levels.mask(lv) & (body.labels == 1)]))
               for lv in ("T12", "L1", "L2")}
    # measured: T12 125, L1 138, L2 150 HU (TotalSegmentator's own report: L1 110 in an
    # eroded body); flipping the labels along any axis gives -16..67 HU
    assert all(m > 100 for m in medians.values()), medians
    # organs (ids not in the scheme) are dropped
    assert set(np.unique(levels.labels)) <= {0, *levels.names.values()}


def test_labels_resampled_in_physical_space(real_data, ts_ct):
    """On a 2 mm grid, the 3 mm labels still land on bone (nearest neighbour, via affines)."""
    folder = real_data / "ts_abdomen_3mm"
    ct2 = resample(ts_ct, 2.0)
    levels = load_labels(folder / "totalseg_labels.nii.gz", like=ct2, scheme="totalsegmentator")
    body = load_labels(folder / "totalseg_vertebrae_body.nii.gz", like=ct2)
    assert levels.shape == ct2.shape
    for level in ("T12", "L1", "L2"):
        assert np.median(ct2.hu[levels.mask(level) & (body.labels == 1)]) > 100


def test_verse_crop_trabecular_label(real_data):
    folder = real_data / "verse_lumbar_crop"
    ct = load_ct(folder / "sub-ct_label-22_ct.nii.gz")
    assert ct.shape == (47, 73, 73) and ct.spacing == pytest.approx((1.5,) * 3)
    assert ct.orientation == ("S", "P", "L")
    assert ct.metadata["input_orientation"] == ("P", "I", "R")
    assert (ct.hu.min(), ct.hu.max()) == (-1030.0, 1961.0)
    sub = load_labels(folder / "sub-ct_seg-subreg_label-22_msk.nii.gz", like=ct)
    vert = load_labels(folder / "sub-ct_seg-vert_label-22_msk.nii.gz", like=ct, scheme="verse")
    assert dict(vert.names) == {"L2": 21, "L3": 22, "L4": 23}
    # measured 51 HU; flipping S-I or A-P gives 83 / 23 HU
    assert np.median(ct.hu[sub.labels == 50]) == pytest.approx(50, abs=10)
    assert np.median(ct.hu[sub.labels == 49]) > 150  # cortex is denser than the interior


@pytest.mark.parametrize("patient, n, spacing, padding_hu, padding_voxels, hu_max", [
    ("LIDC-IDRI-0001", 16, (2.5, 0.703125, 0.703125), -2048.0, 892352, 3071.0),
    ("LIDC-IDRI-0002", 12, (1.25, 0.681641, 0.681641), -3024.0, 669264, 1561.0),
    ("LIDC-IDRI-0003", 11, (2.5, 0.820312, 0.820312), -2048.0, 613492, 1978.0),
])
def test_lidc_slabs_padding(real_data, patient, n, spacing, padding_hu, padding_voxels, hu_max):
    ct = load_ct(real_data / "lidc_slabs" / patient)
    assert ct.shape == (n, 512, 512) and ct.spacing == pytest.approx(spacing)
    assert ct.orientation == ("S", "P", "L")
    assert ct.metadata["padding_hu"] == padding_hu
    assert ct.metadata["padding_voxels"] == padding_voxels
    # the non-padding values below -1024 HU of LIDC-IDRI-0003 (-1025..-1032) are kept
    assert -1100 < ct.hu.min() <= -1024 and ct.hu.max() == hu_max
    assert ct.metadata["manufacturer"] == "GE MEDICAL SYSTEMS" and ct.metadata["kvp"] == 120.0


def test_lidc_slabs_folder_of_three_patients_is_refused(real_data):
    """lidc_slabs holds series of LIDC-IDRI-0001/0002/0003: refused unless series_uid chooses."""
    with pytest.raises(DicomSeriesError, match=r"lidc_slabs: the folder holds series of 3 different "
                                               r"patients \(PatientID LIDC-IDRI-0001, .*--series"):
        load_ct(real_data / "lidc_slabs")
    series = list_series(real_data / "lidc_slabs")
    assert [s.n_slices for s in series] == [16, 12, 11]
    assert all(s.modality == "CT" and s.plane == "axial" and s.kind == "image" for s in series)
    assert [s.patient_id for s in series] == ["LIDC-IDRI-0001", "LIDC-IDRI-0002", "LIDC-IDRI-0003"]
    other = load_ct(real_data / "lidc_slabs", series_uid=series[2].uid)
    assert other.shape == (11, 512, 512) and other.metadata["series_uid"] == series[2].uid
    # chosen explicitly: no "series_chosen" flag, the choice is still recorded
    assert other.metadata["input_flags"] == ()
    assert "chosen by series_uid among 3 series" in other.metadata["series_choice"]


def test_lidc_chest_geometry_and_metadata(real_data, lidc_chest):
    ct = lidc_chest
    assert ct.shape == (275, 512, 512)
    assert ct.spacing == pytest.approx((1.0, 0.78125, 0.78125))
    assert ct.orientation == ("S", "P", "L")
    assert (ct.hu.min(), ct.hu.max()) == (-1000.0, 1979.0)  # uint16 pixels, intercept -1000
    meta = ct.metadata
    assert (meta["kvp"], meta["manufacturer"], meta["model"], meta["kernel"]) == (
        120.0, "Philips", "Brilliance 16P", "D")
    assert (meta["study_date"], meta["patient_sex"], meta["slice_thickness_mm"]) == (
        "2000-01-01", "F", 1.0)
    assert meta["exposure_mas"] == pytest.approx(300.0)
    for absent in ("device_serial", "station", "ctdi_vol_mgy", "patient_age_years",
                   "contrast_agent"):
        assert meta[absent] is None
    assert meta["input_orientation"] == ("L", "P", "S") and meta["input_shape"] == (512, 512, 275)


def test_lidc_chest_slices_sorted_by_position_not_name(real_data, lidc_chest):
    """File names do not follow the slice order; pixels follow ImagePositionPatient."""
    files = sorted((real_data / "lidc_0314_chest" / "dicom").iterdir())
    z_of = {f: float(pydicom.dcmread(f, stop_before_pixels=True).ImagePositionPatient[2])
            for f in files[:3] + files[-3:]}
    z_slices = lidc_chest.index_to_world(np.c_[np.arange(275), np.zeros((275, 2))])[:, 2]
    assert np.all(np.diff(z_slices) > 0)
    for file, z in z_of.items():
        k = int(np.argmin(np.abs(z_slices - z)))
        assert abs(z_slices[k] - z) < 1e-3
        ds = pydicom.dcmread(file)
        expected = ds.pixel_array * float(ds.RescaleSlope) + float(ds.RescaleIntercept)
        np.testing.assert_array_equal(lidc_chest.hu[k], expected)


# --------------------------------------------------------------------------- round trips


def test_nifti_round_trip_restores_input_grid(tmp_path):
    # stored R, A, S (as most NIfTI files) with distinct spacing per axis
    affine = np.diag([-0.7, -0.8, 2.5, 1.0])
    affine[:3, 3] = (100.25, 80.5, -300.125)
    original = CTVolume(np.arange(4 * 5 * 6, dtype=float).reshape(4, 5, 6) - 500, affine)
    first = load_ct(write_nifti(original, tmp_path / "a.nii.gz"))
    assert first.orientation == ("S", "P", "L")
    np.testing.assert_array_equal(first.hu, to_canonical(original).hu)
    np.testing.assert_allclose(first.affine, to_canonical(original).affine, atol=WORLD_TOL_MM)
    second = write_nifti(first, tmp_path / "b.nii")
    image = nib.load(second)
    assert image.get_data_dtype() == np.int16  # integer HU stored as int16
    np.testing.assert_array_equal(np.asanyarray(image.dataobj), original.hu)  # input grid
    np.testing.assert_allclose(np.diag([-1, -1, 1, 1]) @ image.affine, affine, atol=WORLD_TOL_MM)
    assert int(image.header["sform_code"]) == 1 and int(image.header["qform_code"]) == 1


def test_nifti_round_trip_float_hu(tmp_path):
    vol = ramp_ct()
    vol = vol.with_hu(vol.hu + 0.25)
    back = load_ct(write_nifti(vol, tmp_path / "f.nii.gz"))
    assert nib.load(tmp_path / "f.nii.gz").get_data_dtype() == np.float32
    np.testing.assert_array_equal(back.hu, vol.hu)
    np.testing.assert_allclose(back.affine, vol.affine, atol=WORLD_TOL_MM)


@pytest.mark.parametrize("name", ["f.nii", "f.nii.gz"])
def test_float_nifti_volume_is_its_own_memory(tmp_path, name):
    """A float32 NIfTI is read without a copy where nibabel hands a fresh array (gzip), and copied
    where it hands a memory map (plain .nii): rewriting the file afterwards changes nothing loaded."""
    vol = ramp_ct()
    vol = vol.with_hu(vol.hu + 0.25)
    path = write_nifti(vol, tmp_path / name)
    back = load_ct(path)
    assert back.hu.dtype == np.float32 and not back.hu.flags.writeable
    np.testing.assert_array_equal(back.hu, vol.hu)
    image = nib.load(path)
    nib.save(nib.Nifti1Image(np.zeros(image.shape, np.float32), image.affine, image.header), path)
    np.testing.assert_array_equal(back.hu, vol.hu)


@pytest.mark.parametrize("suffix", [".mha", ".nrrd", ".mhd"])
def test_itk_formats_read_exactly(tmp_path, suffix):
    """An ITK image stored P, I, R reads canonical with each voxel at its ITK position."""
    array_zyx = np.arange(3 * 4 * 5, dtype=np.int16).reshape(3, 4, 5) - 1024
    image = sitk.GetImageFromArray(array_zyx)
    image.SetSpacing((0.5, 1.25, 2.0))
    image.SetOrigin((10.5, -20.25, 33.0))
    image.SetDirection((0, 0, -1, -1, 0, 0, 0, -1, 0))  # x -> R, y -> A... (P, I, R)
    path = tmp_path / f"ct{suffix}"
    sitk.WriteImage(image, str(path))
    ct = load_ct(path)
    assert ct.orientation == ("S", "P", "L")
    assert ct.metadata["format"] == ("nrrd" if suffix == ".nrrd" else "mha")
    # every voxel value sits at the physical point ITK gives it
    for index_xyz in [(0, 0, 0), (4, 3, 2), (2, 1, 1), (4, 0, 1)]:
        point = np.array(image.TransformIndexToPhysicalPoint(index_xyz))
        value = array_zyx[index_xyz[::-1]]
        k = np.rint(ct.world_to_index(point)).astype(int)
        np.testing.assert_allclose(ct.index_to_world(k), point, atol=1e-9)
        assert ct.hu[tuple(k)] == value
    # written back, the NIfTI holds the ITK grid in the file's own index order (x, y, z)
    out = nib.load(write_nifti(ct, tmp_path / "back.nii.gz"))
    np.testing.assert_array_equal(np.asanyarray(out.dataobj), array_zyx.transpose(2, 1, 0))
    itk_back = sitk.ReadImage(str(tmp_path / "back.nii.gz"))
    np.testing.assert_allclose(itk_back.GetOrigin(), image.GetOrigin(), atol=WORLD_TOL_MM)
    np.testing.assert_allclose(itk_back.GetDirection(), image.GetDirection(), atol=1e-6)


def test_dicom_round_trip_shuffled_names(tmp_path):
    vol = ramp_ct()
    vol = vol.with_metadata(kvp=100.0, manufacturer="ACME", study_date="2021-03-04",
                            patient_sex="M", patient_age_years=61, exposure_mas=45.0,
                            kernel="B30f")
    write_dicom_series(vol, tmp_path / "w", series_uid="1.2.826.0.1.3680043.10.1")
    ds = pydicom.dcmread(sorted((tmp_path / "w").iterdir())[0])
    assert float(ds.RescaleIntercept) == -1024 and float(ds.RescaleSlope) == 1
    assert ds.pixel_array.dtype == np.int16
    folder = shuffle_into(tmp_path / "w", tmp_path / "in")
    back = load_ct(folder)
    np.testing.assert_array_equal(back.hu, vol.hu)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    meta = back.metadata
    assert (meta["kvp"], meta["manufacturer"], meta["study_date"], meta["patient_sex"],
            meta["patient_age_years"], meta["exposure_mas"], meta["kernel"]) == (
        100.0, "ACME", "2021-03-04", "M", 61.0, 45.0, "B30f")
    assert meta["series_uid"] == "1.2.826.0.1.3680043.10.1" and meta["format"] == "dicom"
    assert meta["resampled"] is None and meta["ctdi_vol_mgy"] is None


def test_dicom_rescale_slope_and_padding(tmp_path):
    hu = np.full((3, 6, 6), 40.5, dtype=np.float32)
    hu[:, 0, :] = -3024.0  # outside-FOV padding on one edge
    vol = CTVolume.from_spacing(hu, spacing=(1, 1, 1))
    back = load_ct(write_dicom_series(vol, tmp_path, RescaleSlope=0.5, RescaleIntercept=-3100.0))
    assert back.metadata["padding_hu"] == -3024.0 and back.metadata["padding_voxels"] == 18
    assert back.hu[:, 0, :].tolist() == np.full((3, 6), -1000.0).tolist()
    assert np.all(back.hu[:, 1:, :] == 40.5)


def test_dicom_written_nifti_matches_itk_conversion(tmp_path):
    """CT and mask written from a DICOM CT overlay the ITK conversion of the same series."""
    vol = ramp_ct(shape=(4, 5, 6))
    folder = write_dicom_series(vol, tmp_path / "dcm")
    ct = load_ct(folder)
    mask = LabelVolume(ct.hu > 0, ct.affine, names={"bright": 1})
    write_nifti(ct, tmp_path / "ct.nii.gz")
    write_nifti(mask, tmp_path / "mask.nii.gz", like=ct)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder)))
    itk = reader.Execute()
    for name in ("ct.nii.gz", "mask.nii.gz"):
        ours = sitk.ReadImage(str(tmp_path / name))
        assert ours.GetSize() == itk.GetSize()
        np.testing.assert_allclose(ours.GetOrigin(), itk.GetOrigin(), atol=WORLD_TOL_MM)
        np.testing.assert_allclose(ours.GetSpacing(), itk.GetSpacing(), atol=1e-6)
        np.testing.assert_allclose(ours.GetDirection(), itk.GetDirection(), atol=1e-6)
    ours = sitk.ReadImage(str(tmp_path / "ct.nii.gz"))
    np.testing.assert_array_equal(sitk.GetArrayFromImage(ours), sitk.GetArrayFromImage(itk))


def test_label_written_like_ct_goes_on_input_grid(real_data, tmp_path):
    folder = real_data / "verse_lumbar_crop"
    ct = load_ct(folder / "sub-ct_label-22_ct.nii.gz")
    vert = load_labels(folder / "sub-ct_seg-vert_label-22_msk.nii.gz", like=ct, scheme="verse")
    written = nib.load(write_nifti(vert, tmp_path / "vert.nii.gz", like=ct))
    original = nib.load(folder / "sub-ct_seg-vert_label-22_msk.nii.gz")
    assert nib.aff2axcodes(written.affine) == ("P", "I", "R")
    np.testing.assert_allclose(written.affine, original.affine, atol=WORLD_TOL_MM)
    np.testing.assert_array_equal(np.asanyarray(written.dataobj),
                                  np.asanyarray(original.dataobj))  # VerSe ids unchanged


def test_labels_on_another_grid_are_resampled_before_writing(tmp_path):
    ct = ramp_ct(shape=(4, 4, 4), spacing=(1, 1, 1), origin=(0, 0, 0))
    coarse = LabelVolume.from_spacing(np.full((2, 2, 2), 3), spacing=(2, 2, 2),
                                      origin=(0.5, 0.5, 0.5))
    image = nib.load(write_nifti(coarse, tmp_path / "l.nii.gz", like=ct))
    assert image.shape == (4, 4, 4) and np.all(np.asanyarray(image.dataobj) == 3)


def test_label_map_in_other_orientation_matches(tmp_path, ts_ct, real_data):
    """A TotalSegmentator map rewritten in LPS/int16 loads onto the CT identically."""
    folder = real_data / "ts_abdomen_3mm"
    reference = load_labels(folder / "totalseg_labels.nii.gz", like=ts_ct, scheme="ts")
    raw = nib.load(folder / "totalseg_labels.nii.gz")
    flipped = nib.Nifti1Image(np.asanyarray(raw.dataobj)[::-1, ::-1].astype(np.int16),
                              raw.affine @ np.array([[-1, 0, 0, 121], [0, -1, 0, 100],
                                                     [0, 0, 1, 0], [0, 0, 0, 1]]))
    nib.save(flipped, tmp_path / "lps.nii.gz")
    moved = load_labels(tmp_path / "lps.nii.gz", like=ts_ct, scheme="totalsegmentator")
    np.testing.assert_array_equal(moved.labels, reference.labels)


def test_multiframe_dicom(tmp_path):
    vol = ramp_ct()
    folder = write_dicom_series(vol, tmp_path, multiframe=True, KVP=80.0)
    assert [p.name for p in folder.iterdir()] == ["ct.dcm"]
    for path in (folder / "ct.dcm", folder):
        back = load_ct(path)
        np.testing.assert_array_equal(back.hu, vol.hu)
        np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
        assert back.metadata["kvp"] == 80.0
    assert list_series(folder)[0].n_slices == vol.shape[0]


def test_sagittal_series_reads_canonical(tmp_path):
    # array axis 0 steps left-right: one file per sagittal slice
    affine = np.zeros((4, 4))
    affine[0, 0], affine[2, 1], affine[1, 2], affine[3, 3] = 1.5, -0.8, 0.7, 1.0
    vol = CTVolume(np.arange(5 * 6 * 7, dtype=float).reshape(5, 6, 7) - 100, affine)
    folder = write_dicom_series(vol, tmp_path)
    assert list_series(folder)[0].plane == "sagittal"
    back = load_ct(folder)
    expected = to_canonical(vol)
    assert back.orientation == ("S", "P", "L") and back.metadata["resampled"] is None
    np.testing.assert_array_equal(back.hu, expected.hu)
    np.testing.assert_allclose(back.affine, expected.affine, atol=1e-6)


def test_several_series_choose_most_slices(tmp_path, caplog):
    write_dicom_series(ramp_ct(shape=(3, 4, 4)), tmp_path / "a", series_uid="1.2.3.1")
    write_dicom_series(ramp_ct(shape=(5, 4, 4)), tmp_path / "b", series_uid="1.2.3.2")
    write_dicom_series(ramp_ct(shape=(7, 4, 4)), tmp_path / "c", series_uid="1.2.3.3",
                       Modality="MR")
    with caplog.at_level(logging.INFO, logger="bmdqct"):
        ct = load_ct(tmp_path)
    assert ct.shape[0] == 5 and "1.2.3.1" in caplog.text  # the MR series is not chosen
    assert load_ct(tmp_path, series_uid="1.2.3.1").shape[0] == 3
    assert [(s.uid, s.modality) for s in list_series(tmp_path)] == [
        ("1.2.3.2", "CT"), ("1.2.3.1", "CT"), ("1.2.3.3", "MR")]


@pytest.mark.parametrize("decoder", ["pydicom", "gdcm"])
def test_compressed_series(tmp_path, monkeypatch, decoder):
    """RLE-compressed files decode (pydicom; GDCM when pydicom has no decoder)."""
    from pydicom.uid import RLELossless

    vol = ramp_ct()
    folder = write_dicom_series(vol, tmp_path)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.compress(RLELossless)
        ds.save_as(path)
    if decoder == "gdcm":
        def no_decoder(*args, **kwargs):
            raise NotImplementedError("no decoder plugin for RLE Lossless")

        monkeypatch.setattr(pydicom.pixels, "pixel_array", no_decoder)
    np.testing.assert_array_equal(load_ct(folder).hu, vol.hu)


def test_copied_files_are_deduplicated(tmp_path):
    folder = write_dicom_series(ramp_ct(), tmp_path / "a")
    shutil.copytree(folder, tmp_path / "copy")
    shutil.move(tmp_path / "copy", folder / "copy")
    np.testing.assert_array_equal(load_ct(folder).hu, ramp_ct().hu)


# --------------------------------------------------------------------------- geometry rules


def test_one_missing_slice_is_interpolated(tmp_path):
    vol = world_ramp_ct(canonical_affine((1.25, 0.7, 0.7), (0, 0, -50)), (8, 5, 6))
    folder = write_dicom_series(vol.with_hu(np.rint(vol.hu)), tmp_path)
    (folder / "00003.dcm").unlink()
    back = load_ct(folder)
    assert back.shape == vol.shape  # the gap is filled back at the nominal spacing
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)
    assert "irregular slice spacing" in back.metadata["resampled"]
    stored = np.rint(vol.hu)
    np.testing.assert_array_equal(back.hu[[0, 1, 2, 4, 5, 6, 7]], stored[[0, 1, 2, 4, 5, 6, 7]])
    np.testing.assert_allclose(back.hu[3], (stored[2] + stored[4]) / 2, atol=1e-4)


def test_mixed_spacing_resampled_to_median(tmp_path):
    vol = ramp_ct(shape=(6, 4, 4), spacing=(1.0, 1.0, 1.0))
    folder = write_dicom_series(vol, tmp_path)
    for name, z in (("00004.dcm", 34.5), ("00005.dcm", 36.0)):  # steps 1,1,1,1,1.5,1.5
        ds = pydicom.dcmread(folder / name)
        ds.ImagePositionPatient = [-10.0, 20.0, z]
        ds.save_as(folder / name)
    back = load_ct(folder)
    assert back.shape[0] == 7 and back.spacing[0] == pytest.approx(1.0)
    # new slice 5 at z=35 mm lies a third of the way from the slice at 34.5 to the one at 36
    np.testing.assert_allclose(back.hu[5], vol.hu[4] + (vol.hu[5] - vol.hu[4]) / 3, atol=1e-3)
    np.testing.assert_array_equal(back.hu[[0, 1, 2, 3, 6]], vol.hu[[0, 1, 2, 3, 5]])


def test_large_gap_is_refused(tmp_path):
    folder = write_dicom_series(ramp_ct(shape=(8, 4, 4)), tmp_path)
    for k in (3, 4, 5):
        (folder / f"0000{k}.dcm").unlink()
    with pytest.raises(DicomSeriesError, match=r"slice gap of 8\.00 mm .*nominal spacing 2\.00 mm"):
        load_ct(folder)


def test_gantry_tilt_corrected_in_plane(tmp_path):
    # 15 deg tilt: each slice shifted 0.536 mm posteriorly (y) per 2 mm slice step
    affine = canonical_affine((2.0, 0.8, 0.8), (-5, -8, -20))
    affine[1, 0] = 2.0 * np.tan(np.radians(15))
    vol = world_ramp_ct(affine, (9, 24, 10))
    back = load_ct(write_dicom_series(vol, tmp_path, RescaleSlope=0.01,
                                      RescaleIntercept=0.0))
    assert "gantry tilt 15.00 deg" in back.metadata["resampled"]
    assert back.orientation == ("S", "P", "L") and back.spacing == pytest.approx((2, 0.8, 0.8))
    assert abs(back.affine[1, 0]) < 1e-9  # orthogonal now
    # HU is linear in world position, so in-plane linear interpolation keeps it exactly
    # (up to the 0.01 HU steps of RescaleSlope) between the input's outer voxel centres
    inside = back.hu > -999
    world = back.index_to_world(np.argwhere(inside))
    source = vol.world_to_index(world)
    interior = np.all((source > -1e-6) & (source < np.array(vol.shape) - 1 + 1e-6), axis=1)
    np.testing.assert_allclose(back.hu[inside][interior], world[interior] @ (3.0, -2.0, 5.0),
                               atol=0.011)
    assert inside[:, 4:-4].all()  # only the drifted edge rows are outside the scan


def test_strong_gantry_tilt_is_refused(tmp_path):
    affine = canonical_affine((1.0, 1.0, 1.0))
    affine[1, 0] = np.tan(np.radians(40))
    with pytest.raises(DicomSeriesError, match=r"gantry tilt of 40\.0 deg, expected at most 30"):
        load_ct(write_dicom_series(CTVolume(np.zeros((4, 5, 5)), affine), tmp_path))


@pytest.mark.parametrize("writer", ["dicom", "nifti"])
def test_oblique_series_resampled_axis_aligned(tmp_path, writer):
    affine = canonical_affine((1.0, 0.9, 0.9), (3, -4, 5))
    affine[:3, :3] = rotation_z(12) @ affine[:3, :3]
    vol = world_ramp_ct(affine, (5, 16, 16))
    if writer == "dicom":
        back = load_ct(write_dicom_series(vol, tmp_path, RescaleSlope=0.01,
                                          RescaleIntercept=0.0))
    else:
        back = load_ct(write_nifti(vol, tmp_path / "o.nii.gz"))
    assert "oblique by 12.0 deg" in back.metadata["resampled"]
    off_diagonal = np.abs(back.affine[:3, :3])[np.abs(back.affine[:3, :3]) < 0.5]
    assert np.all(off_diagonal < 1e-9)
    assert back.spacing == pytest.approx((1.0, 0.9, 0.9))
    inside = back.hu > -999
    world = back.index_to_world(np.argwhere(inside))
    # exact between the input's outer voxel centres; ITK extends the edge values half a
    # voxel further (the voxels' extent)
    source = vol.world_to_index(world)
    interior = np.all((source > -1e-6) & (source < np.array(vol.shape) - 1 + 1e-6), axis=1)
    assert interior.sum() > 0.5 * inside.size
    np.testing.assert_allclose(back.hu[inside][interior], world[interior] @ (3.0, -2.0, 5.0),
                               atol=0.011)


def test_slightly_oblique_series_kept_exact(tmp_path):
    affine = canonical_affine((1.0, 0.9, 0.9))
    affine[:3, :3] = rotation_z(0.5) @ affine[:3, :3]
    vol = CTVolume(np.arange(3 * 4 * 5, dtype=float).reshape(3, 4, 5), affine)
    back = load_ct(write_dicom_series(vol, tmp_path))
    assert back.metadata["resampled"] is None
    np.testing.assert_array_equal(back.hu, vol.hu)
    np.testing.assert_allclose(back.affine, vol.affine, atol=1e-6)


def test_strongly_oblique_is_refused(tmp_path):
    affine = canonical_affine((1.0, 1.0, 1.0))
    affine[:3, :3] = rotation_z(40) @ affine[:3, :3]
    path = write_nifti(CTVolume(np.zeros((3, 4, 4)), affine), tmp_path / "o.nii.gz")
    with pytest.raises(GeometryError, match=r"40\.0 deg from the patient axes, expected at most"):
        load_ct(path)


def test_sheared_nifti_is_refused(tmp_path):
    affine = np.diag([1.0, 1.0, 1.0, 1.0])
    affine[1, 2] = 0.3  # slices shifted in y along z: uncorrected gantry tilt
    nib.save(nib.Nifti1Image(np.zeros((4, 4, 4), np.int16), affine), tmp_path / "s.nii.gz")
    with pytest.raises(GeometryError, match="not orthogonal"):
        load_ct(tmp_path / "s.nii.gz")


# --------------------------------------------------------------------------- errors


def test_nonexistent_path(tmp_path):
    with pytest.raises(InputError, match="missing.nii.gz: no such file or folder"):
        load_ct(tmp_path / "missing.nii.gz")
    with pytest.raises(InputError, match="no such file or folder"):
        load_labels(tmp_path / "missing.nii.gz")


def test_empty_folder(tmp_path):
    with pytest.raises(DicomSeriesError, match="the folder is empty"):
        load_ct(tmp_path)


def test_folder_of_non_dicom_files(tmp_path):
    (tmp_path / "notes.txt").write_text("not an image\n")
    (tmp_path / "sub").mkdir()
    (tmp_path / "sub" / "data.bin").write_bytes(bytes(range(256)) * 4)
    with pytest.raises(DicomSeriesError, match=r"no DICOM image series found among 2 file\(s\)"):
        load_ct(tmp_path)


def test_unsupported_single_file(tmp_path):
    (tmp_path / "scan.png").write_bytes(b"\x89PNG\r\n")
    with pytest.raises(InputError, match="scan.png: unsupported file"):
        load_ct(tmp_path / "scan.png")


def test_truncated_dicom_file(tmp_path):
    folder = write_dicom_series(ramp_ct(), tmp_path)
    victim = folder / "00002.dcm"
    victim.write_bytes(victim.read_bytes()[:-40])
    with pytest.raises(DicomSeriesError, match="00002.dcm: truncated or corrupt DICOM file"):
        load_ct(folder)


def test_mr_series(tmp_path):
    folder = write_dicom_series(ramp_ct(), tmp_path, series_uid="1.2.3.9", Modality="MR")
    with pytest.raises(DicomSeriesError, match="no CT series found .*MR series 1.2.3.9"):
        load_ct(folder)
    with pytest.raises(DicomSeriesError, match="modality MR, expected CT"):
        load_ct(folder, series_uid="1.2.3.9")


def test_single_2d_slice(tmp_path):
    folder = write_dicom_series(ramp_ct(shape=(1, 4, 5)), tmp_path)
    with pytest.raises(DicomSeriesError, match=r"single 2-D slice \(4x5 pixels"):
        load_ct(folder)
    with pytest.raises(DicomSeriesError, match="single 2-D slice"):
        load_ct(folder / "00000.dcm")
    nib.save(nib.Nifti1Image(np.zeros((4, 5), np.int16), np.eye(4)), tmp_path / "slice.nii")
    with pytest.raises(InputError, match=r"shape \(4, 5\); expected a 3-D volume"):
        load_ct(tmp_path / "slice.nii")


def test_mixed_series(tmp_path):
    write_dicom_series(ramp_ct(shape=(3, 4, 4)), tmp_path / "a", series_uid="1.2.3.5")
    write_dicom_series(ramp_ct(shape=(3, 6, 6), origin=(40, 0, 0)), tmp_path / "b",
                       series_uid="1.2.3.5")
    with pytest.raises(DicomSeriesError, match=r"mixed series: .* 2 size\(s\)"):
        load_ct(tmp_path)


def test_same_position_twice(tmp_path):
    folder = write_dicom_series(ramp_ct(shape=(3, 4, 4)), tmp_path)
    ds = pydicom.dcmread(folder / "00001.dcm")
    ds.SOPInstanceUID = "1.2.3.4.5.6"
    ds.save_as(folder / "extra.dcm")
    with pytest.raises(DicomSeriesError, match="2 images share the slice position"):
        load_ct(folder)


def test_unknown_series_uid(tmp_path):
    folder = write_dicom_series(ramp_ct(), tmp_path, series_uid="1.2.3.7")
    with pytest.raises(DicomSeriesError,
                       match="no series with SeriesInstanceUID 9.9.9; found 1.2.3.7"):
        load_ct(folder, series_uid="9.9.9")
    with pytest.raises(ValueError, match="series_uid applies to DICOM input only"):
        load_ct(write_nifti(ramp_ct(), tmp_path / "x.nii"), series_uid="1.2")


def test_label_map_of_another_patient(tmp_path, ts_ct, real_data):
    raw = nib.load(real_data / "ts_abdomen_3mm" / "totalseg_labels.nii.gz")
    shifted = raw.affine.copy()
    shifted[:3, 3] += (0, 0, 900)  # another scan's coordinates
    nib.save(nib.Nifti1Image(np.asanyarray(raw.dataobj), shifted), tmp_path / "other.nii.gz")
    with pytest.raises(GeometryError, match="other.nii.gz: label map does not overlap the CT"):
        load_labels(tmp_path / "other.nii.gz", like=ts_ct, scheme="totalsegmentator")


def test_label_map_errors(tmp_path):
    affine = np.eye(4)
    nib.save(nib.Nifti1Image(np.full((3, 3, 3), 0.5, np.float32), affine), tmp_path / "f.nii")
    with pytest.raises(InputError, match="non-integer values"):
        load_labels(tmp_path / "f.nii")
    nib.save(nib.Nifti1Image(np.full((3, 3, 3), 7, np.uint8), affine), tmp_path / "o.nii")
    with pytest.raises(InputError, match=r"no vertebra of scheme 'totalsegmentator' .*\[7\]"):
        load_labels(tmp_path / "o.nii", scheme="totalsegmentator")
    with pytest.raises(InputError, match="is a folder"):
        load_labels(tmp_path)


def test_nifti_without_orientation(tmp_path):
    image = nib.Nifti1Image(np.zeros((3, 3, 3), np.int16), np.eye(4))
    image.set_sform(None, code=0)
    image.set_qform(None, code=0)
    nib.save(image, tmp_path / "n.nii")
    with pytest.raises(GeometryError, match="NIfTI without orientation"):
        load_ct(tmp_path / "n.nii")


def test_writer_argument_errors(tmp_path):
    with pytest.raises(ValueError, match="writes .nii or .nii.gz files; got suffix .mha"):
        write_nifti(ramp_ct(), tmp_path / "x.mha")
    with pytest.raises(TypeError, match="expected a CTVolume or LabelVolume"):
        write_nifti(np.zeros((2, 2, 2)), tmp_path / "x.nii")
    with pytest.raises(ValueError, match="'KVp' is not a DICOM keyword"):
        write_dicom_series(ramp_ct(), tmp_path, KVp=120)
    with pytest.raises(ValueError, match="does not fit int16"):
        write_dicom_series(ramp_ct().with_hu(np.full((6, 7, 8), 40000.0)), tmp_path)


# --------------------------------------------------------------------------- CLI


def test_cli_info_json(tmp_path, capsys):
    folder = write_dicom_series(ramp_ct(), tmp_path, KVP=120.0)
    assert main(["info", str(folder), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["geometry"]["shape"] == [6, 7, 8]
    assert info["geometry"]["orientation"] == "SPL"
    assert info["metadata"]["kvp"] == 120.0 and info["metadata"]["input_shape"] == [8, 7, 6]


def test_cli_info_text_and_series(tmp_path, capsys):
    folder = write_dicom_series(ramp_ct(), tmp_path, series_uid="1.2.3.11")
    assert main(["info", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "[geometry]" in out and "spacing_mm" in out and "padding_hu" in out
    assert main(["series", str(folder)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith("uid") and "1.2.3.11  CT" in out
    assert main(["series", str(folder), "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["n_slices"] == 6


def test_cli_error_exit_code(tmp_path, capsys):
    assert main(["info", str(tmp_path / "nothing")]) == 1
    assert "no such file or folder" in capsys.readouterr().err


def test_label_map_itk_formats_and_errors(tmp_path):
    """A label map in NRRD loads like its NIfTI twin; unreadable ITK files name the file."""
    ct = ramp_ct(shape=(4, 5, 6), spacing=(2.0, 1.0, 1.0), origin=(0.0, 0.0, 0.0))
    labels = LabelVolume(np.arange(120).reshape(4, 5, 6) % 3 * 10, ct.affine, names={})
    image = sitk.GetImageFromArray(np.ascontiguousarray(labels.labels.transpose(2, 1, 0)))  # (z, y, x) = L, P, S
    image.SetSpacing((2.0, 1.0, 1.0))
    image.SetDirection((0, 0, 1, 0, 1, 0, 1, 0, 0))     # x -> S, y -> P, z -> L: the canonical grid
    sitk.WriteImage(image, str(tmp_path / "labels.nrrd"))
    back = load_labels(tmp_path / "labels.nrrd", like=ct)
    np.testing.assert_array_equal(back.labels, labels.labels)
    (tmp_path / "broken.mha").write_text("ObjectType = Image\nNDims = 3\nDimSize = 4 4\n")
    with pytest.raises(InputError, match=r"broken\.mha: cannot read this image"):
        load_labels(tmp_path / "broken.mha")
    with pytest.raises(TypeError, match="like must be a CTVolume or LabelVolume"):
        load_labels(tmp_path / "labels.nrrd", like=np.zeros((4, 5, 6)))


def test_multiframe_rescale_of_zero_is_not_overridden(tmp_path):
    """Enhanced CT keeps RescaleIntercept in its functional groups; an intercept of 0 there must win
    over a stray top-level RescaleIntercept (a falsy 0 once fell through to it: HU off by 1024)."""
    vol = ramp_ct()
    folder = write_dicom_series(vol.with_hu(vol.hu + 1000.0), tmp_path, multiframe=True, RescaleIntercept=0.0)
    ds = pydicom.dcmread(folder / "ct.dcm")
    ds.RescaleIntercept, ds.RescaleSlope = -1024, 1
    ds.save_as(folder / "ct.dcm")
    np.testing.assert_array_equal(load_ct(folder / "ct.dcm").hu, vol.hu + 1000.0)


# --------------------------------------------------------------------------- issue 12: real-world input


def test_siemens_j2k_series_reads_with_true_geometry(real_data):
    """The anonymised Siemens JPEG 2000 series stores SeriesInstanceUID with length 0; it is
    grouped by its other tags and must match SimpleITK's GDCM series reader voxel for voxel."""
    folder = real_data / "ts_siemens_j2k_dicom"
    ct = load_ct(folder)
    reader = sitk.ImageSeriesReader()
    reader.SetFileNames(reader.GetGDCMSeriesFileNames(str(folder), ""))
    image = reader.Execute()
    ref = to_canonical(CTVolume(sitk.GetArrayFromImage(image).astype(np.float32),
                                _itk_affine(image)))
    assert ct.shape == ref.shape == (20, 512, 512)
    np.testing.assert_allclose(ct.affine, ref.affine, atol=1e-6)
    np.testing.assert_array_equal(ct.hu, ref.hu)
    assert ct.spacing == pytest.approx((2.0, 0.9765625, 0.9765625))
    assert ct.metadata["series_uid"] is None and ct.metadata["manufacturer"] == "SIEMENS"
    assert [code for code, _ in ct.metadata["input_flags"]] == ["series_uid_missing"]
    [info] = list_series(folder)
    assert info.uid_missing and info.n_slices == 20


def _itk_affine(image):
    from bmdqct.io._read import _itk_affine as affine

    return affine(image)


@pytest.mark.parametrize("syntax", ["RLELossless", "JPEGLSLossless", "JPEG2000Lossless"])
def test_compressed_series_encoded_by_pydicom(tmp_path, syntax):
    """Lossless transfer syntaxes pydicom can encode (RLE natively, JPEG-LS with pyjpegls,
    JPEG 2000 with pylibjpeg-openjpeg) read identically to the plain slices."""
    import pydicom.uid

    uid = getattr(pydicom.uid, syntax)
    vol = ramp_ct(shape=(4, 64, 64))  # J2K needs >= 32 px per side
    folder = write_dicom_series(vol, tmp_path)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        try:
            ds.compress(uid)
        except RuntimeError as err:  # encoder plug-in not installed
            pytest.skip(f"no pydicom encoder for {uid.name}: {err}")
        ds.save_as(path)
    assert pydicom.dcmread(next(folder.iterdir())).file_meta.TransferSyntaxUID == uid
    np.testing.assert_array_equal(load_ct(folder).hu, vol.hu)


@pytest.mark.parametrize("option", ["--j2k", "--jpegls", "--jpeg", "--rle"])
def test_compressed_series_made_by_gdcmconv(tmp_path, option):
    """gdcmconv (Debian libgdcm-tools) output: lossless J2K, JPEG-LS, JPEG process 14, RLE."""
    import subprocess

    gdcmconv = shutil.which("gdcmconv")
    if gdcmconv is None:
        pytest.skip("gdcmconv not installed (apt-get install libgdcm-tools)")
    vol = ramp_ct(shape=(4, 64, 64))  # J2K needs >= 32 px per side
    folder = write_dicom_series(vol, tmp_path / "plain")
    out = tmp_path / "compressed"
    out.mkdir()
    for path in sorted(folder.iterdir()):
        args = [gdcmconv, option] + (["--lossless"] if option in ("--j2k", "--jpegls") else [])
        subprocess.run(args + [str(path), str(out / path.name)], check=True)
    syntax = pydicom.dcmread(out / "00000.dcm").file_meta.TransferSyntaxUID
    assert syntax.is_compressed
    np.testing.assert_array_equal(load_ct(out).hu, vol.hu)


def test_missing_codec_names_the_package(tmp_path, monkeypatch):
    from pydicom.uid import JPEG2000Lossless

    from bmdqct.io._dicom import codec_hint

    vol = ramp_ct(shape=(3, 64, 64))
    folder = write_dicom_series(vol, tmp_path)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.compress(JPEG2000Lossless)
        ds.save_as(path)

    def no_decoder(*args, **kwargs):
        raise RuntimeError("no plugin")

    def no_gdcm(self):
        raise RuntimeError("GDCM cannot decode")

    monkeypatch.setattr(pydicom.pixels, "pixel_array", no_decoder)
    monkeypatch.setattr(sitk.ImageFileReader, "Execute", no_gdcm)
    with pytest.raises(DicomSeriesError, match=r"00000\.dcm: cannot decode.*pip install pylibjpeg "
                                               r"pylibjpeg-openjpeg"):
        load_ct(folder)
    assert "pylibjpeg-libjpeg" in codec_hint("1.2.840.10008.1.2.4.57")


def test_empty_series_uid_verified_by_full_read(tmp_path):
    """Files with an empty SeriesInstanceUID form one series keyed by their other tags."""
    vol = ramp_ct(shape=(4, 6, 6))
    folder = write_dicom_series(vol, tmp_path)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        ds.SeriesInstanceUID = ""
        ds.SOPInstanceUID = ""
        ds.save_as(path)
    back = load_ct(folder)
    np.testing.assert_array_equal(back.hu, vol.hu)
    assert back.metadata["input_flags"][0][0] == "series_uid_missing"


def test_two_patients_refused_unless_series_chosen(tmp_path):
    write_dicom_series(ramp_ct(shape=(5, 4, 4)), tmp_path / "a", series_uid="1.2.3.1", PatientID="P1")
    write_dicom_series(ramp_ct(shape=(3, 4, 4)), tmp_path / "b", series_uid="1.2.3.2", PatientID="P2")
    with pytest.raises(DicomSeriesError, match=r"2 different patients \(PatientID P1, P2\)"):
        load_ct(tmp_path)
    assert load_ct(tmp_path, series_uid="1.2.3.2").shape[0] == 3


def test_interleaved_series_rule_skips_localizer_and_derived(tmp_path, caplog):
    """Largest axial CT image series wins, never the (larger) localizer or derived series."""
    folder = tmp_path / "mixed"
    write_dicom_series(ramp_ct(shape=(9, 4, 4)), tmp_path / "loc", series_uid="1.2.3.1",
                       ImageType=["ORIGINAL", "PRIMARY", "LOCALIZER"])
    write_dicom_series(ramp_ct(shape=(8, 4, 4)), tmp_path / "der", series_uid="1.2.3.2",
                       ImageType=["DERIVED", "SECONDARY", "AXIAL"])
    write_dicom_series(ramp_ct(shape=(5, 4, 4)), tmp_path / "img", series_uid="1.2.3.3")
    folder.mkdir()
    for sub in ("loc", "der", "img"):  # interleaved in one folder
        for path in (tmp_path / sub).iterdir():
            shutil.move(path, folder / f"{sub}{path.name}")
    with caplog.at_level(logging.WARNING, logger="bmdqct"):
        ct = load_ct(folder)
    assert ct.shape[0] == 5 and ct.metadata["series_uid"] == "1.2.3.3"
    assert "never a localizer or derived series" in caplog.text
    assert ct.metadata["input_flags"][0][0] == "series_chosen"
    assert "1.2.3.3" in ct.metadata["series_choice"]


def test_equally_eligible_series_are_refused(tmp_path):
    write_dicom_series(ramp_ct(shape=(5, 4, 4)), tmp_path / "a", series_uid="1.2.3.1")
    write_dicom_series(ramp_ct(shape=(5, 4, 4)), tmp_path / "b", series_uid="1.2.3.2")
    with pytest.raises(DicomSeriesError, match=r"2 series are equally eligible.*--series"):
        load_ct(tmp_path)


def test_rescale_slope_zero_refused(tmp_path):
    folder = write_dicom_series(ramp_ct(shape=(3, 4, 4)), tmp_path)
    ds = pydicom.dcmread(folder / "00001.dcm")
    ds.RescaleSlope = 0
    ds.save_as(folder / "00001.dcm")
    with pytest.raises(DicomSeriesError, match=r"00001\.dcm: RescaleSlope is .*0.*expected a positive"):
        load_ct(folder)


def test_missing_rescale_tags_flagged(tmp_path):
    vol = ramp_ct(shape=(3, 4, 4))
    folder = write_dicom_series(vol, tmp_path, RescaleIntercept=0.0)
    for path in folder.iterdir():
        ds = pydicom.dcmread(path)
        del ds.RescaleSlope, ds.RescaleIntercept
        ds.save_as(path)
    back = load_ct(folder)
    np.testing.assert_array_equal(back.hu, vol.hu)
    [(code, message)] = back.metadata["input_flags"]
    assert code == "rescale_assumed" and "slope 1, intercept 0" in message


def test_irregular_spacing_flagged(tmp_path):
    vol = ramp_ct(shape=(6, 4, 4), spacing=(1.0, 1.0, 1.0))
    folder = write_dicom_series(vol, tmp_path)
    for name, z in (("00004.dcm", 34.5), ("00005.dcm", 36.0)):
        ds = pydicom.dcmread(folder / name)
        ds.ImagePositionPatient = [ds.ImagePositionPatient[0], ds.ImagePositionPatient[1], z]
        ds.save_as(folder / name)
    back = load_ct(folder)
    [(code, message)] = back.metadata["input_flags"]
    assert code == "irregular_spacing" and "1, 1.5 mm" in message


def test_nifti_stored_as_hu_plus_1024_refused(tmp_path):
    hu = np.full((20, 20, 20), -1000.0)
    hu[4:16, 4:16, 4:16] = -100.0  # fat
    hu[6:14, 6:14, 6:14] = 40.0  # soft tissue
    vol = CTVolume.from_spacing(hu, spacing=(1, 1, 1))
    assert load_ct(write_nifti(vol, tmp_path / "ok.nii.gz")).hu.min() == -1000
    with pytest.raises(InputError, match=r"shifted\.nii\.gz: the values look like HU \+ 1024"):
        load_ct(write_nifti(vol.with_hu(hu + 1024), tmp_path / "shifted.nii.gz"))


@pytest.mark.parametrize("suffix", [".MHA", ".NII.GZ", ".NRRD", ".MHD"])
def test_upper_case_suffixes(tmp_path, suffix):
    vol = ramp_ct()
    lower = tmp_path / ("ct" + suffix.lower())
    if suffix == ".NII.GZ":
        write_nifti(vol, lower)
    else:
        sitk.WriteImage(sitk.GetImageFromArray(vol.hu), str(lower))
    upper = tmp_path / ("CT" + suffix)
    shutil.move(lower, upper)
    back = load_ct(upper)
    assert back.shape == vol.shape


def test_upper_case_dcm_files(tmp_path):
    vol = ramp_ct(shape=(3, 4, 4))
    folder = write_dicom_series(vol, tmp_path)
    for path in list(folder.iterdir()):
        path.rename(path.with_name(path.stem + ".DCM"))
    np.testing.assert_array_equal(load_ct(folder).hu, vol.hu)
